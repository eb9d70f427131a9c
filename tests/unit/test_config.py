import pytest

from vidjudge.server.config import Config, ConfigError, describe, load_config


def test_defaults_work_without_any_file_or_env():
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.limits.decode_limits().max_bytes == 64 * 1024 * 1024


def test_precedence_file_then_env_then_overrides(tmp_path):
    f = tmp_path / "vidjudge.toml"
    f.write_text('[decode]\nworkers = 3\n[encoder]\nmax_batch = 4\nmax_wait_ms = 7\n')
    cfg = load_config(f, env={"VIDJUDGE_ENCODER__MAX_BATCH": "6", "VIDJUDGE_LIMITS__ALLOWED_DIRS": '["/data"]',
                              "UNRELATED": "x"},
                      overrides=["encoder.max_wait_ms=2.5"])
    assert cfg.decode.workers == 3
    assert cfg.encoder.max_batch == 6
    assert cfg.encoder.max_wait_ms == 2.5
    assert [str(p) for p in cfg.limits.allowed_dirs] == ["/data"]


@pytest.mark.parametrize("override, needle", [
    ("decode.workers=-1", "decode.workers"),
    ("encoder.backend=tensorflow", "encoder.backend"),
    ("nosuch.field=1", "sections"),
    ("decode.nosuch=1", "decode.nosuch"),
    ("decode.workers", "section.field=value"),
])
def test_bad_values_name_the_field(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(env={}, overrides=[override])


def test_unreadable_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[decode\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(bad, env={})


def test_describe_lists_every_field_with_its_description():
    text = describe()
    for section, field in Config.model_fields.items():
        assert f"[{section}]" in text
        for name, f in field.annotation.model_fields.items():
            assert f"\n{name} = " in text
            assert f.description and f.description in text


def test_message_limit_must_exceed_video_limit():
    with pytest.raises(ConfigError, match="max_message_mb .* must exceed limits.max_video_mb"):
        load_config(env={}, overrides=["limits.max_video_mb=100"])
    assert load_config(env={}, overrides=["limits.max_video_mb=100", "server.max_message_mb=120"])


def test_decode_workers_default_to_half_the_cores(monkeypatch):
    from vidjudge.server import config

    for cores, want in [(1, 2), (2, 2), (3, 2), (8, 4), (64, 32)]:
        monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert load_config(env={}).decode.workers == want
        assert load_config(env={}, overrides=["decode.workers=0"]).decode.workers == want
        assert load_config(env={"VIDJUDGE_DECODE__WORKERS": "auto"}).decode.workers == want
        assert load_config(env={}, overrides=["decode.workers=3"]).decode.workers == 3
    assert '0 or "auto" = half the usable cores' in describe()
