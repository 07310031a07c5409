"""The versions pyproject declares: floors that the code needs, and the shipped tiny-warmstart asset in the form
that every allowed transformers reads (`make colab-check` runs the Colab branch and the version-sensitive tests
under the oldest declared transformers/peft, tools/colab_check.py)."""
import importlib.util
import json
import re
import shutil
from pathlib import Path

from cocos_lib.toy import warmstart as toy

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("colab_check", ROOT / "tools" / "colab_check.py")
colab_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(colab_check)


def floors() -> dict[str, str]:
    deps = re.search(r"dependencies = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S).group(1)
    return dict(re.findall(r'"([A-Za-z0-9_-]+)>=([0-9.]+)"', deps))


def test_floors_cover_what_the_code_calls():
    f = floors()
    version = tuple(int(x) for x in f["torch"].split("."))
    assert version >= (2, 3)                   # torch.amp.GradScaler(device) (train.py), cudagraph_mark_step_begin
    assert tuple(int(x) for x in f["peft"].split(".")) >= (0, 12)   # peft < 0.12 casts adapters to fp16 weights
    assert f["transformers"] == "4.56"         # StaticCache(config=, max_cache_len=), from_pretrained(dtype=)


def test_the_colab_check_runs_the_declared_floors():
    """`--versions oldest` installs exactly the floors pyproject declares (not a version that merely satisfies
    them), and `newest` asks pip for the latest."""
    f = floors()
    assert colab_check.version_pins("oldest") == [f"transformers=={f['transformers']}.0", f"peft=={f['peft']}.0"]
    assert colab_check.version_pins("newest") == ["--upgrade", "transformers", "peft"]


def test_the_shipped_asset_names_no_tokenizer_class_older_transformers_lack():
    cfg = json.loads((toy.warmstart_path() / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"      # TokenizersBackend exists only from 5.0
    assert "extra_special_tokens" not in cfg                         # a list there breaks 4.x (it wants a dict)
    assert cfg["additional_special_tokens"] == ["[BEGIN]", "[DONE]", "[CORRECT]"]


def test_portable_config_loads_the_same_tokenizer(tmp_path):
    """What transformers 5 saves (TokenizersBackend, extra_special_tokens list), made portable, loads the same
    ids, special ids and decode as before."""
    from transformers import AutoTokenizer
    v5 = tmp_path / "v5"
    shutil.copytree(toy.warmstart_path(), v5)
    cfg = json.loads((v5 / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = "TokenizersBackend"
    cfg["extra_special_tokens"] = cfg.pop("additional_special_tokens")
    (v5 / "tokenizer_config.json").write_text(json.dumps(cfg))
    portable = tmp_path / "portable"
    shutil.copytree(v5, portable)
    toy.portable_tokenizer_config(portable)
    assert json.loads((portable / "tokenizer_config.json").read_text()) == json.loads(
        (toy.warmstart_path() / "tokenizer_config.json").read_text())
    text = "[BEGIN]\ndef f(x):\n    return x[DONE]<eos>"
    a, b = AutoTokenizer.from_pretrained(portable), AutoTokenizer.from_pretrained(toy.warmstart_path())
    assert a(text).input_ids == b(text).input_ids and sorted(a.all_special_ids) == sorted(b.all_special_ids)
    assert a.decode(a(text).input_ids, skip_special_tokens=True) == "\ndef f(x):\n    return x"
