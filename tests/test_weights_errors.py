"""Bad and malicious ``.pth`` / ``state.pt`` files: one-line WeightsError (exit 3) naming the file,
nothing of a malicious pickle runs, no output file is left behind (issue #14, items 6 and 7)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_image_folder
from dynast_cli.cli import app
from dynast_cli.errors import WeightsError
from dynast_cli.weights.io import load_torch_checkpoint, safe_torch_load
from stand_ins import TinyEncoder, one_thread  # noqa: F401 (autouse fixture)

CODE = "holds code, not only tensors; refused for safety"
CORRUPT = "not a PyTorch checkpoint (corrupt or truncated)"


class Payload:
    """Unpickling this runs ``touch MARKER``: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_malicious(path: Path, marker: Path, how: str = "torch") -> Path:
    obj = {"weight": torch.zeros(2), "payload": Payload(marker)}
    if how == "torch":
        torch.save(obj, path)
    elif how == "torch-legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle at the interpreter's default protocol (4 or 5): torch cannot even parse its frames
        path.write_bytes(pickle.dumps(obj))
    return path


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected message) for every kind of bad checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    (folder / "empty.pth").write_bytes(b"")
    files["empty"] = (folder / "empty.pth", "is empty (0 bytes): not a PyTorch checkpoint")
    (folder / "garbage.pth").write_bytes(b"garbage, not a checkpoint\n" * 10)
    files["garbage"] = (folder / "garbage.pth", CORRUPT)
    torch.save({"a": torch.zeros(1000)}, folder / "whole.pth")
    (folder / "truncated.pth").write_bytes((folder / "whole.pth").read_bytes()[:300])
    files["truncated"] = (folder / "truncated.pth", CORRUPT)
    torch.save({}, folder / "emptydict.pth")
    files["emptydict"] = (folder / "emptydict.pth", "holds an empty state dict (no tensors)")
    torch.save({"state_dict": {}}, folder / "emptystate.pth")
    files["emptystate"] = (folder / "emptystate.pth", "holds an empty state dict (no tensors)")
    torch.save([torch.zeros(1)], folder / "list.pth")
    files["list"] = (folder / "list.pth", "holds a list, not a state dict of tensors")
    torch.save({"a": 1}, folder / "ints.pth")
    files["ints"] = (folder / "ints.pth", "does not hold a state dict of tensors")
    return files


def assert_one_line_error(result, path: Path, message: str, code: int = WeightsError.exit_code) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert lines == [f"error: {path}: {message}"], result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output


@pytest.mark.parametrize("how", ["torch", "torch-legacy", "pickle"])
def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path, how):
    marker = tmp_path / "MARKER"
    path = write_malicious(tmp_path / "evil.pth", marker, how)
    with pytest.raises(WeightsError) as info:
        safe_torch_load(path)
    assert str(info.value) == f"{path}: {CODE}"
    assert not marker.exists()


def test_bad_checkpoints_give_one_clear_line(tmp_path):
    for path, message in bad_files(tmp_path).values():
        with pytest.raises(WeightsError) as info:
            load_torch_checkpoint(path)
        assert str(info.value) == f"{path}: {message}"
    with pytest.raises(WeightsError, match=r"nope\.pth: no such file"):
        safe_torch_load(tmp_path / "nope.pth")
    with pytest.raises(WeightsError, match="is a folder"):
        safe_torch_load(tmp_path)


def test_a_protocol_4_checkpoint_is_not_called_corrupt(tmp_path):
    path = tmp_path / "p4.pth"
    torch.save({"a": torch.zeros(3)}, path, pickle_protocol=4)
    try:
        assert torch.equal(safe_torch_load(path)["a"], torch.zeros(3))  # a torch that reads it
    except WeightsError as exc:
        assert "unsupported pickle protocol" in str(exc) and CODE not in str(exc)


def test_convert_dynast_cli_bad_and_malicious_files(tmp_path):
    runner = CliRunner()
    out = tmp_path / "out.safetensors"
    cases = list(bad_files(tmp_path / "bad").values())
    marker = tmp_path / "MARKER"
    for how in ("torch", "pickle"):
        cases.append((write_malicious(tmp_path / f"evil_{how}.pth", marker, how), CODE))
    for path, message in cases:
        result = runner.invoke(app, ["convert", "dynast", str(path), "-o", str(out)])
        assert_one_line_error(result, path, message)
    scalars = tmp_path / "scalars.pth"
    needed = ("encoder_q.layer1.0.weight_orig", "encoder_q.layer4.0.weight_orig", "pos_embed", "pos_21.1.weight",
              "transformer_1.0.f_prune.weight")
    torch.save({k: torch.zeros(()) for k in needed}, scalars)
    result = runner.invoke(app, ["convert", "dynast", str(scalars), "-o", str(out)])
    assert_one_line_error(result, scalars, "is not an official DynaST generator checkpoint (its tensor shapes give no "
                                           "valid configuration)")
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == []  # no (partial) output


@pytest.mark.parametrize("command,names", [  # the role read first leads
    ("adaattn", ["latest_net_transformer.pth", "latest_net_decoder.pth", "latest_net_adaattn_3.pth"]),
    ("stya2k", ["latest_net_decoder.pth", "latest_net_transform.pth", "latest_net_A2K.pth"]),
])
def test_convert_style_cli_bad_and_malicious_files(tmp_path, command, names):
    runner = CliRunner()
    marker = tmp_path / "MARKER"
    cases = list(bad_files(tmp_path / "bad").values()) + [(write_malicious(tmp_path / "evil.pth", marker), CODE)]
    folder = tmp_path / "official"
    folder.mkdir()
    out = tmp_path / "out.safetensors"
    for source, message in cases:
        for name in names:
            (folder / name).write_bytes(source.read_bytes())
        result = runner.invoke(app, ["convert", command, str(folder), "-o", str(out)])
        assert_one_line_error(result, folder / names[0], message)
    assert not marker.exists() and not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_resume_from_a_malicious_state_is_refused(tmp_path, monkeypatch):
    """`dynast train style --resume` on a checkpoint whose state.pt runs code: one line, exit 3."""
    import dynast_cli.weights.build as vgg

    monkeypatch.setattr(vgg, "load_vgg16", lambda *a, **k: TinyEncoder())
    images = make_image_folder(tmp_path, "images", 2, 32, 32)
    out = tmp_path / "run"
    args = ["train", "style", "--content", str(images), "--style", str(images), "--size", "32", "--batch", "1",
            "--out", str(out), "--sample-every", "0", "--device", "cpu"]
    runner = CliRunner()
    first = runner.invoke(app, [*args, "--steps", "1"])
    assert first.exit_code == 0, first.output
    state = out / "checkpoint" / "state.pt"
    marker = tmp_path / "MARKER"
    write_malicious(state, marker)
    result = runner.invoke(app, [*args, "--steps", "2", "--resume"])
    assert_one_line_error(result, state, CODE)
    assert not marker.exists()
    state.write_bytes(b"")
    assert_one_line_error(runner.invoke(app, [*args, "--steps", "2", "--resume"]), state,
                          "is empty (0 bytes): not a PyTorch checkpoint")
    torch.save({"step": 1}, state)
    result = runner.invoke(app, [*args, "--steps", "2", "--resume"])
    assert result.exit_code == WeightsError.exit_code and "unreadable training state" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_weights_with_nan_or_inf_are_refused_naming_the_tensor(tmp_path):
    """A diverged training's weights painted an all-black image with exit 0; now exit 3 at load."""
    from safetensors.torch import save_file

    from dynast_cli.weights.io import load_weights

    good = {"a.weight": torch.ones(3, 3), "b.bias": torch.zeros(3), "steps": torch.tensor([5]),
            "q.weight": torch.ones(2).to(torch.float8_e4m3fn)}  # isfinite has no fp8 kernel: not checked, loads
    save_file(good, tmp_path / "good.safetensors")
    assert set(load_weights(tmp_path / "good.safetensors")[0]) == set(good)
    for name, value in [("nan", float("nan")), ("inf", float("inf"))]:
        bad = dict(good, **{"b.bias": torch.tensor([0.0, value, 0.0])})
        save_file(bad, tmp_path / f"{name}.safetensors")
        with pytest.raises(WeightsError, match=r"tensor 'b.bias' holds NaN or infinite values") as info:
            load_weights(tmp_path / f"{name}.safetensors")
        assert info.value.exit_code == 3 and f"{name}.safetensors" in str(info.value)
    # the check sums each tensor first: finite values whose sum overflows still load, NaN/inf in any dtype do not
    huge = dict(good, **{"b.bias": torch.full((4,), 3e38), "h.weight": torch.full((4,), 6e4, dtype=torch.float16)})
    save_file(huge, tmp_path / "huge.safetensors")
    assert set(load_weights(tmp_path / "huge.safetensors")[0]) == set(huge)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        bad = dict(good, **{"h.weight": torch.tensor([1.0, -float("inf")], dtype=dtype)})
        save_file(bad, tmp_path / "low.safetensors")
        with pytest.raises(WeightsError, match=r"tensor 'h.weight' holds NaN or infinite values"):
            load_weights(tmp_path / "low.safetensors")


def test_a_pytorch_checkpoint_given_as_weights_says_convert_it_first(tmp_path):
    """``face/pose --weights latest_net_G.pth`` said "not a safetensors file (Error while deserializing header:
    header too large)": the metadata was read before the file kind was checked."""
    from dynast_cli.weights.io import load_weights, read_metadata, tensor_names

    path = tmp_path / "latest_net_G.pth"
    torch.save({"w": torch.zeros(2)}, path)
    for read in (read_metadata, tensor_names, load_weights):
        with pytest.raises(WeightsError) as info:
            read(path)
        assert str(info.value) == (f"{path}: is a PyTorch checkpoint, not safetensors: convert it first with "
                                   "`dynast convert`")
    assert load_torch_checkpoint(path)["w"].tolist() == [0.0, 0.0]  # the .pth readers still read it


def test_a_style_file_given_to_face_or_pose_names_where_their_weights_come_from():
    """``face --weights decoder_vgg16.safetensors`` suggested `dynast convert dynast`, which makes pose weights:
    each task now says where its own weights come from."""
    from dynast_cli.pipelines.face import load_face_generator
    from dynast_cli.pipelines.pose import load_pose_generator

    path = Path(__file__).resolve().parents[1] / "weights" / "decoder_vgg16.safetensors"
    for load, hint in ((load_face_generator, "edge-to-face weights come from `dynast train face`"),
                       (load_pose_generator, "convert the official latest_net_G.pth with `dynast convert dynast`")):
        with pytest.raises(WeightsError) as info:
            load(path, torch.device("cpu"))
        assert str(info.value) == f"{path}: is not a DynaST generator (architecture 'decoder'); {hint}"


def test_convert_dynast_refuses_a_top_k_no_input_could_hold(tmp_path):
    """``--top-k 100000`` was written to the file; the file then failed at run time without naming it."""
    result = CliRunner().invoke(app, ["convert", "dynast", str(tmp_path / "latest_net_G.pth"), "-o",
                                      str(tmp_path / "out.safetensors"), "--top-k", "65"])
    assert result.exit_code == 1 and "'--top-k'" in result.output and "64" in result.output
    assert not list(tmp_path.iterdir())


# --- building without random initialisation -----------------------------------------------------


def test_random_initialisers_are_skipped_only_inside_the_build_mode(monkeypatch):
    from torch import nn

    from dynast_cli.weights.build import _NoRandomInit

    monkeypatch.setattr(_NoRandomInit, "FILL", None)  # as in use (the suite fills NaN)

    marker = torch.full((4, 4), 7.0)
    state = torch.get_rng_state()
    with _NoRandomInit():
        for init in (nn.init.kaiming_uniform_, nn.init.normal_, nn.init.xavier_uniform_):
            assert init(marker) is marker
        assert marker.uniform_() is marker and torch.equal(marker, torch.full((4, 4), 7.0))
        assert torch.equal(nn.init.zeros_(torch.ones(2)), torch.zeros(2))  # deterministic fills still run
        assert torch.equal(torch.ones(2) * 3, torch.full((2,), 3.0))  # other ops untouched
    assert torch.equal(state, torch.get_rng_state())  # nothing was drawn
    nn.init.kaiming_uniform_(marker)
    assert not torch.equal(marker, torch.full((4, 4), 7.0))
    monkeypatch.setattr(_NoRandomInit, "FILL", float("nan"))  # the suite's switch: skipped tensors show
    with _NoRandomInit():
        conv = nn.Conv2d(2, 3, 1)
    assert conv.weight.isnan().all() and conv.bias.isnan().all()


def test_a_built_model_holds_exactly_the_files_tensors(tmp_path):
    from dynast_cli.nn.decoders import VGGDecoder
    from dynast_cli.weights.build import build_model
    from dynast_cli.weights.io import save_weights

    torch.manual_seed(3)
    saved = VGGDecoder(skip=True).state_dict()
    path = save_weights(saved, tmp_path / "dec.safetensors", metadata={"architecture": "decoder",
                                                                       "config": '{"skip": true}'})
    state = torch.get_rng_state()
    built = build_model(path, "decoder").state_dict()
    assert torch.equal(state, torch.get_rng_state())
    assert built.keys() == saved.keys() and all(torch.equal(built[k], saved[k]) for k in saved)
