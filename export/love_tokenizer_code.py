"""The slow tokenizer class written into the tiny LOVE checkpoints as `tokenization_internlm3.py`.

The real releases ship the InternVL3-9B tokenizer: a SentencePiece model (`tokenizer.model`) with
remote code `tokenization_internlm3.py`, loaded by the reference as
``AutoTokenizer.from_pretrained(path, trust_remote_code=True, use_fast=False, add_eos_token=False)``.
That file is not among the stored sources, so this is our own re-expression of what a slow
SentencePiece tokenizer of that family does (INFERRED, see export/love_tiny.py):

- text is split at added tokens by transformers (`PreTrainedTokenizer.tokenize`),
- every other piece of text is encoded by the SentencePiece model as it is (the model itself
  adds no dummy prefix: InternLM tokenizers put `\\n` and the chat tokens right after one another),
- `<s>` first (`add_bos_token`), no `</s>` at the end (`add_eos_token=False`).

`vidjudge export love` checks the converted bundle's tokenizer against the checkpoint's own
tokenizer when it can load it (`--check-tokenizer`), so a real file that behaves differently is
caught at conversion time, not in production.
"""

CODE = '''\
"""Slow SentencePiece tokenizer (vidjudge tiny LOVE checkpoint; see vidjudge/export/love_tokenizer_code.py)."""
import os
from shutil import copyfile

import sentencepiece as spm

try:  # transformers 4.x
    from transformers.tokenization_utils import PreTrainedTokenizer
except ImportError:  # pragma: no cover - transformers 5.x keeps the name at the top level
    from transformers import PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "tokenizer.model"}


class InternLM3Tokenizer(PreTrainedTokenizer):
    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>",
                 add_bos_token=True, add_eos_token=False, clean_up_tokenization_spaces=False, **kwargs):
        self.vocab_file = vocab_file
        self.add_bos_token = add_bos_token
        self.add_eos_token = add_eos_token
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.Load(vocab_file)
        super().__init__(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         add_bos_token=add_bos_token, add_eos_token=add_eos_token,
                         clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)

    @property
    def vocab_size(self):
        return self.sp_model.get_piece_size()

    def get_vocab(self):
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text, **kwargs):
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token):
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index):
        # Ids past the SentencePiece vocabulary (the embedding is padded past the tokenizer) decode to "".
        return self.sp_model.id_to_piece(index) if 0 <= index < self.sp_model.get_piece_size() else ""

    def convert_tokens_to_string(self, tokens):
        out, current = "", []
        for token in tokens:
            if token in self.all_special_tokens:
                out += self.sp_model.decode(current) + token
                current = []
            else:
                current.append(token)
        return out + self.sp_model.decode(current)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        bos = [self.bos_token_id] if self.add_bos_token else []
        eos = [self.eos_token_id] if self.add_eos_token else []
        out = bos + token_ids_0 + eos
        if token_ids_1 is not None:
            out = out + bos + token_ids_1 + eos
        return out

    def save_vocabulary(self, save_directory, filename_prefix=None):
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tokenizer.model")
        if os.path.abspath(self.vocab_file) != os.path.abspath(out):
            copyfile(self.vocab_file, out)
        return (out,)
'''
