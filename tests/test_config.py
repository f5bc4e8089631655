"""The typed params loader: defaults, the repo's params.yaml, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from mger.core.config import ConfigError, Params, load_params, params_from_dict

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.prepare.class_map == "4class" and params.synth.sessions == 5


def test_experiment_sections_set_the_features() -> None:
    train = params_from_dict(
        {"train": {"experiments": {"a": {"model": "text"}}, "finetuned_experiments": {"b": {"model": "audio"}}}}
    ).train
    assert train.all_experiments["a"].features == "frozen" and train.all_experiments["b"].features == "finetuned"


def test_defaults_fill_missing_sections() -> None:
    params = params_from_dict({"synth": {"seed": 3}})
    assert params.synth.seed == 3 and params.synth.sessions == 5 and params.prepare.manifest == "data/manifest.jsonl"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"synth": {"sead": 3}}, "synth.sead: unknown key"),
        ({"sinth": {}}, "sinth: unknown key"),
        ({"synth": {"seed": "three"}}, "synth.seed: expected int, got 'three'"),
        ({"synth": {"seed": True}}, "synth.seed: expected int"),
        ({"synth": {"sessions": 0}}, "synth.sessions: must be positive"),
        ({"synth": {"sessions": 12}}, "synth.sessions: at most 9"),
        ({"prepare": {"class_map": 4}}, "prepare.class_map: 4 is none of: a string; a mapping"),
        (
            {"features": {"speech": {"layer": "lats"}}},
            "features.speech.layer: 'lats' is none of: 'last' or 'mean' or 'all'; an integer; a list of integers",
        ),
        ({"prepare": {"class_map": {"ang": 1}}}, "prepare.class_map"),
        ({"prepare": []}, "prepare: expected a mapping"),
        ({"finetune": {"warmup": 1.5}}, "finetune.warmup: a fraction"),
        ({"finetune": {"folds": []}}, "finetune.folds: needs at least one fold"),
        (
            {"train": {"experiments": {"a": {"model": "text"}}, "finetuned_experiments": {"a": {"model": "audio"}}}},
            "train.finetuned_experiments.a: name already used",
        ),
    ],
)
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        params_from_dict(data)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("synth:\n  seed: [1\n")
    with pytest.raises(ConfigError, match="p.yaml: not valid YAML"):
        load_params(bad)
    bad.write_text("synth:\n  out: 5\n")
    with pytest.raises(ConfigError, match=r"p.yaml: synth.out: expected str, got 5"):
        load_params(bad)
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"lr": -1}}, "train.lr: must be positive, got -1.0"),
        ({"train": {"lr": 0}}, "train.lr: must be positive"),
        ({"train": {"dropout": 1.0}}, r"train.dropout: must be in [0, 1), got 1.0"),
        ({"train": {"weight_decay": -0.1}}, "train.weight_decay: must be >= 0"),
        ({"train": {"seeds": [0, -3]}}, "train.seeds[1]: must be >= 0, got -3"),
        ({"train": {"hidden": 130, "heads": 4}}, "train: hidden size 130 is not divisible by 4 attention heads"),
        (
            {"train": {"experiments": {"a": {"model": "mha_aux", "aux_matching": -0.5}}}},
            "train.experiments.a.aux_matching: must be >= 0",
        ),
        ({"features": {"batch_seconds": -5}}, "features.batch_seconds: must be positive, got -5.0"),
        ({"features": {"speech": {"max_seconds": 0}}}, "features.speech.max_seconds: must be positive"),
        ({"features": {"speech": {"overlap_seconds": 30}}}, "features.speech.overlap_seconds: 30.0 must be less than"),
        ({"features": {"text": {"max_length": 0}}}, "features.text.max_length: must be positive"),
        ({"features": {"out": "f", "audio_out": "f/audio"}}, "features.audio_out: 'f/audio' overlaps features.out 'f'"),
        ({"features": {"out": "f", "audio_out": "f"}}, "features.audio_out: 'f' overlaps features.out 'f'"),
        ({"finetune": {"dropout": 1.5}}, r"finetune.dropout: must be in [0, 1)"),
        ({"finetune": {"weight_decay": -1}}, "finetune.weight_decay: must be >= 0"),
        ({"finetune": {"folds": [0]}}, "finetune.folds[0]: must be positive"),
        ({"demo_model": {"hidden_size": 250}}, "demo_model: hidden size 250 is not divisible by 4"),
        (
            {"align": {"pocketsphinx": {"ladder": [[2.0, 1e-60, 1e-80]]}}},
            "align.pocketsphinx.ladder[0][0]: must be in (0, 1]",
        ),
        ({"align": {"mfa": {"beam": -10}}}, "align.mfa.beam: must be positive"),
        ({"synth": {"seed": -1}}, "synth.seed: must be >= 0"),
        ({"train": {"device": "tpu"}}, "train.device: 'tpu' is not a device: use auto, cpu, cuda, cuda:N or mps"),
        ({"features": {"device": "gpu0"}}, "features.device: 'gpu0' is not a device"),
    ],
)
def test_out_of_range_values_name_the_key(data: dict, message: str) -> None:
    import re

    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(data)


def test_every_numeric_param_has_a_range() -> None:
    """A numeric param without a rule in mger.core.config.RANGES fails here (add its range)."""
    from mger.core.config import RANGES, Range, numeric_params

    params = load_params(REPO / "params.yaml")
    params.features.batch_seconds = 50.0
    params.features.speech.layer = [0, 2]
    params.train.finetuned_experiments["x"] = params.train.experiments["mha_both"]
    unruled = sorted({rule for _, rule, _ in numeric_params(params)} - set(RANGES))
    assert unruled == []
    assert all(isinstance(allowed, Range) for allowed in RANGES.values())  # one table: bounds and maxima


@pytest.mark.parametrize(
    "key",
    [
        "synth.sessions",
        "synth.dialogs_per_session",
        "synth.turns_per_dialog",
        "synth.max_sentences_per_turn",
        "align.n_jobs",
        "features.shard_size",
        "features.n_jobs",
        *(f"finetune.{k}" for k in ("epochs", "batch_size", "grad_accum", "lr", "text_lr", "head_lr")),
        "finetune.max_train_seconds",
        "finetune.patience",
        *(f"train.{k}" for k in ("epochs", "batch_size", "patience", "hidden", "heads", "layers")),
    ],
)
def test_sizes_and_counts_are_positive_by_the_one_range_table(key: str) -> None:
    """The bounds the sections once checked in their own ``__post_init__`` are rows of RANGES,
    refused with the same message, from a params file and from an override alike."""
    from mger.core.config import with_overrides

    section, name = key.split(".")
    for bad in (0, -1):
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must be positive, got {bad}"):
            params_from_dict({section: {name: bad}})
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must be positive, got {bad}"):
            with_overrides(Params(), {key: bad})


def _demo_overrides(node, params, defaults, key: str = ""):
    """(dotted key, line) of every params.yaml leaf whose value differs from the dataclass default.

    Named collections (``extra_speech``, ``experiments``: empty by default) are the demo's
    content, not overrides, and are not walked."""
    import dataclasses

    import yaml

    for k_node, v_node in node.value:
        name, where = k_node.value, f"{key}.{k_node.value}".lstrip(".")
        value, default = getattr(params, name), getattr(defaults, name)
        if isinstance(default, dict):
            continue
        if dataclasses.is_dataclass(value) and isinstance(v_node, yaml.MappingNode):
            yield from _demo_overrides(v_node, value, default, where)
        elif value != default:
            yield where, k_node.start_mark.line


def test_params_yaml_differs_from_the_defaults_only_where_it_says_demo() -> None:
    """The dataclasses of mger.core.config hold the defaults; params.yaml is the demo's deliberate
    overrides: each value there that differs from its default says "demo" in its comment."""
    import yaml

    text = (REPO / "params.yaml").read_text()
    lines = text.splitlines()
    found = list(_demo_overrides(yaml.compose(text), load_params(REPO / "params.yaml"), Params()))
    assert "finetune.epochs" in {key for key, _ in found}  # the check sees the overrides
    unmarked = [f"{key} (line {line + 1})" for key, line in found if "demo" not in lines[line].partition("#")[2]]
    assert unmarked == [], "params.yaml values that differ from the defaults without a 'demo' comment"


def test_the_default_ladder_aligns_as_params_yaml_does() -> None:
    """The pocketsphinx ladder's default is params.yaml's (the last-resort rung included)."""
    from mger.alignment.pocketsphinx_backend import PocketsphinxAligner
    from mger.core.align_settings import PocketsphinxSettings

    repo = load_params(REPO / "params.yaml").align.pocketsphinx
    assert repo == PocketsphinxSettings()
    assert PocketsphinxAligner(repo).ladder == PocketsphinxAligner(PocketsphinxSettings(ladder=repo.ladder[:3])).ladder


def test_demo_full_extends_params_yaml_with_more_experiments_only() -> None:
    """params/demo-full.yaml = params.yaml + the rows left out of the demo, trained into other dirs."""
    demo, full = load_params(REPO / "params.yaml"), load_params(REPO / "params" / "demo-full.yaml")
    assert set(demo.train.experiments) < set(full.train.experiments)
    assert all(full.train.experiments[n] == spec for n, spec in demo.train.experiments.items())
    assert full.train.metrics_dir != demo.train.metrics_dir and full.report.out != demo.report.out
    same = {
        "train": dataclasses.replace(
            full.train,
            experiments=demo.train.experiments,
            metrics_dir=demo.train.metrics_dir,
            epochs_dir=demo.train.epochs_dir,
            predictions_dir=demo.train.predictions_dir,
        ),
        "report": demo.report,
    }
    assert dataclasses.replace(full, **same) == demo


def test_extends_merges_mappings_and_refuses_cycles(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("train: {epochs: 3, experiments: {a: {model: text}}}\nsplit: {seed: 4}\n")
    (tmp_path / "more.yaml").write_text("extends: base.yaml\ntrain: {experiments: {b: {model: audio}}}\n")
    params = load_params(tmp_path / "more.yaml")
    assert list(params.train.experiments) == ["a", "b"] and params.train.epochs == 3 and params.split.seed == 4
    (tmp_path / "loop.yaml").write_text("extends: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="a cycle"):
        load_params(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"orphan.yaml: extends: nowhere.yaml: no such params file"):
        load_params(tmp_path / "orphan.yaml")


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "twice.yaml").write_text("train:\n  lr: 0.001\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: not valid YAML \(duplicate key 'lr'.*line 3"):
        load_params(tmp_path / "twice.yaml")
    (tmp_path / "once.yaml").write_text("train: {lr: 0.001}\nsplit: {seed: 1}\n")
    assert load_params(tmp_path / "once.yaml").train.lr == 0.001


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error where torch sees no GPU")
def test_cuda_without_a_gpu_names_the_param() -> None:
    from mger.features.encoders import resolve_device

    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match=r"^train.device: 'cuda:1' asked for, but torch sees no CUDA device here"):
        resolve_device("cuda:1", "train.device")


VARIANTS = {"aux": {}, "noaux": {"fusion": {"aux_matching": 0.0}}}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"finetune": {"variants": {"no aux": {}}}}, "finetune.variants: 'no aux' is not a name: use letters, digits"),
        ({"finetune": {"variants": {"a": {"out": "x"}}}}, "finetune.variants.a.out: shared by every variant"),
        ({"finetune": {"variants": {"a": {"lr": -1.0}}}}, "finetune.variants.a.lr: must be positive"),
        (
            {"finetune": {"variants": {"a": {"fusion": {"aux_unimodal": -1}}}}},
            "finetune.variants.a.fusion.aux_unimodal",
        ),
        ({"finetune": {"variants": {"a": {"lr": "fast"}}}}, "finetune.variants.a.lr: expected float"),
        ({"finetune": {"variants": {"a": {"warmup": 2.0}}}}, "finetune.variants.a.warmup: a fraction"),
        ({"finetune": {"variants": {"a": {"objectiv": "fusion"}}}}, "finetune.variants.a.objectiv: unknown key"),
        ({"finetune": {"tag": "x"}}, "finetune.tag: unknown key"),
        (
            {"finetune": {"variants": VARIANTS}, "train": {"finetuned_experiments": {"e": {"model": "text"}}}},
            "train.finetuned_experiments.e.finetune: name the fine-tuning variant it reads (one of aux, noaux)",
        ),
        (
            {
                "finetune": {"variants": VARIANTS},
                "train": {"finetuned_experiments": {"e": {"model": "text", "finetune": "x"}}},
            },
            "train.finetuned_experiments.e.finetune: 'x' is not a variant of finetune.variants (aux, noaux)",
        ),
        (
            {"train": {"finetuned_experiments": {"e": {"model": "text", "finetune": "aux"}}}},
            "train.finetuned_experiments.e.finetune: 'aux' is not a variant of finetune.variants (none is declared)",
        ),
        (
            {"finetune": {"variants": VARIANTS}, "train": {"experiments": {"e": {"model": "text", "finetune": "aux"}}}},
            "train.experiments.e.finetune: only experiments of train.finetuned_experiments",
        ),
        ({"finetune": {"objective": "fusion", "seed": 5}}, "finetune.seed: 5 is not one of train.seeds [0, 1, 2]"),
        (
            {"finetune": {"variants": {"a": {"objective": "fusion", "seed": 7}}}, "train": {"seeds": [0, 1]}},
            "finetune.variants.a.seed: 7 is not one of train.seeds [0, 1]",
        ),
        (
            {"finetune": {"objective": "fusion"}, "train": {"seeds": [0, 5000000]}},
            "train.seeds: 5000000 is over 3999999 under the fusion objective",
        ),
    ],
)
def test_bad_fine_tuning_variants_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(data)


def test_fine_tuning_variants_merge_and_name_their_folders() -> None:
    """Each variant is finetune's settings with its overrides merged in (mappings key by key);
    with several, its folders carry its name; with one, or none declared, they are the plain ones."""
    ft = params_from_dict({"finetune": {"objective": "fusion", "fusion": {"aux_unimodal": 0.5}, "variants": VARIANTS}})
    ft = ft.finetune
    noaux = ft.variant("noaux")
    assert ft.variant_names == ["aux", "noaux"] and noaux.objective == "fusion"
    assert (noaux.fusion.aux_matching, noaux.fusion.aux_unimodal) == (0.0, 0.5)
    assert noaux.fold_dir(2) == Path(ft.out) / "fold-2" / "noaux"
    assert noaux.features_dir(2) == Path(ft.features_out) / "fold-2" / "noaux"
    assert noaux.reports == str(Path(ft.reports) / "noaux") and ft.variant("aux").fusion == ft.fusion
    with pytest.raises(ConfigError, match="several variants"):
        ft.variant(None)
    one = params_from_dict({"finetune": {"variants": {"only": {"epochs": 2}}}}).finetune.variant("only")
    plain = load_params(REPO / "params.yaml").finetune
    assert one.epochs == 2 and one.fold_dir(1) == Path("data/finetune/fold-1") and one.reports == "reports/finetune"
    assert plain.variant_names == [None] and plain.variant(None) is plain
    assert plain.fold_dir(3) == Path("data/finetune/fold-3") and plain.features_dir(3) == Path(
        "data/features-ft/fold-3"
    )


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"experiments": {"../data_quality": {"model": "text"}}}}, "train.experiments: '../data_quality'"),
        ({"train": {"experiments": {"/tmp/x": {"model": "text"}}}}, "train.experiments: '/tmp/x'"),
        ({"train": {"finetuned_experiments": {"a.b": {"model": "text"}}}}, "train.finetuned_experiments: 'a.b'"),
        ({"train": {"experiments": {"-x": {"model": "text"}}}}, "train.experiments: '-x'"),
        ({"train": {"experiments": {"x" * 101: {"model": "text"}}}}, "train.experiments: 'xxx"),
        ({"features": {"extra_speech": {"a/b": {}}}}, "features.extra_speech: 'a/b'"),
        ({"features": {"extra_speech": {"..": {}}}}, "features.extra_speech: '..'"),
        (
            {"train": {"experiments": {"a": {"model": "audio", "speech_store": "../speech"}}}},
            "train.experiments.a.speech_store: '../speech'",
        ),
    ],
)
def test_names_are_not_paths(data: dict, message: str) -> None:
    """Experiment and store names become file names: letters, digits, _ and - only."""
    with pytest.raises(ConfigError, match=re.escape(message) + r".* is not a name: use letters, digits, _ and -"):
        params_from_dict(data)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"experiments": {"all": {"model": "text"}}}}, "train.experiments: 'all' is reserved"),
        ({"train": {"finetuned_experiments": {"all": {"model": "text"}}}}, "train.finetuned_experiments: 'all'"),
        ({"features": {"extra_speech": {"text": {}}}}, "features.extra_speech: 'text' is reserved"),
        ({"features": {"extra_speech": {"all": {}}}}, "features.extra_speech: 'all' is reserved"),
    ],
)
def test_names_the_command_line_means_otherwise_are_refused(data: dict, message: str) -> None:
    """`--experiment all` and `--kind all|speech|text` would never pick a row or store of that name."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(data)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"synth": {"turns_per_dialog": 10**11}}, "synth.turns_per_dialog: at most 999"),
        ({"synth": {"dialogs_per_session": 100}}, "synth.dialogs_per_session: at most 99"),
    ],
)
def test_huge_synth_sizes_are_refused(data: dict, message: str) -> None:
    """A size synth cannot name files for is one line, not hours of eSpeak."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        params_from_dict(data)


@pytest.mark.parametrize("name", ["a,b", "neu\nx", "", "p/q"])
def test_class_names_of_a_class_map_are_names(name: str) -> None:
    """A class name becomes a predictions CSV column (p_<class>): a comma or newline would shift them."""
    with pytest.raises(ConfigError, match=r"prepare\.class_map\.neu: .* is not a class name"):
        params_from_dict({"prepare": {"class_map": {"neu": name, "hap": "hap"}}})
    assert params_from_dict({"prepare": {"class_map": {"neu": "neutral", "exc": "hap"}}}).prepare.class_map


def test_names_of_the_one_pattern_load() -> None:
    params = params_from_dict(
        {
            "features": {"extra_speech": {"eGeMAPS-v2": {"model": "opensmile:eGeMAPSv02"}}},
            "train": {"experiments": {"Text_only-2": {"model": "audio", "speech_store": "eGeMAPS-v2"}}},
        }
    )
    assert list(params.train.experiments) == ["Text_only-2"]


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("train:\n  lr: .inf\n", "train.lr: must be a finite number, got inf"),
        ("train:\n  lr: nan\n", "train.lr: must be a finite number, got nan"),
        ("train:\n  lr: 1e309\n", "train.lr: must be a finite number, got inf"),
        ("train:\n  dropout: .nan\n", "train.dropout: must be a finite number, got nan"),
        ("features:\n  batch_seconds: .inf\n", "features.batch_seconds: must be a finite number, got inf"),
        ("features:\n  speech:\n    max_seconds: -.inf\n", "features.speech.max_seconds: must be a finite number"),
        ("align:\n  pocketsphinx:\n    silprob: .nan\n", "align.pocketsphinx.silprob: must be a finite number"),
        ("align:\n  pocketsphinx:\n    ladder: [[1.0, .nan, 1e-80]]\n", "align.pocketsphinx.ladder[0][1]: must be a"),
        ("train:\n  experiments:\n    a: {model: mha_aux, aux_matching: .inf}\n", "train.experiments.a.aux_matching"),
        ("train:\n  epochs: 1e309\n", "train.epochs: expected int, got '1e309'"),
        ("train:\n  hidden: 1000000000000\n", "train.hidden: must be at most 16384 (a layer width), got 1000000000000"),
        ("train:\n  heads: 100000\n", "train.heads: must be at most 256 (layers or attention heads)"),
        ("train:\n  batch_size: 10000000\n", "train.batch_size: must be at most 65536 (items in a batch)"),
        ("train:\n  n_jobs: 100000\n", "train.n_jobs: must be at most 1024 (parallel processes)"),
        ("train:\n  seeds: [0, 100000000000000000000]\n", "train.seeds[1]: must be at most 4294967295"),
        ("finetune:\n  seed: 5000000\n", "finetune.seed: must be at most 3999999"),
        ("demo_model:\n  intermediate_size: 10000000\n", "demo_model.intermediate_size: must be at most 16384"),
    ],
)
def test_numbers_are_finite_and_sized(tmp_path: Path, yaml_text: str, message: str) -> None:
    """Every number is finite (one check for all of them, not per field); sizes, jobs and seeds
    have maxima (their rows of RANGES)."""
    path = tmp_path / "p.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_params(path)


def test_overrides_are_finite_too() -> None:
    from mger.core.config import with_overrides

    with pytest.raises(ConfigError, match=r"^train\.lr: must be a finite number, got inf$"):
        with_overrides(Params(), {"train.lr": float("inf")})


def test_a_params_file_not_in_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("synth:\n  out: données\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte 18\); save it as UTF-8$"):
        load_params(path)
