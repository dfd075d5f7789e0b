"""`manifpt` command line: a thin Typer shell over the library (no logic lives here)."""

from __future__ import annotations

import functools
import inspect
import json
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import click
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from .errors import UsageError, display

_state = {"debug": False}


def expected_error(e: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for a failure the user can fix; ``None`` for a bug (keeps its traceback)."""
    from pydantic import ValidationError

    from .errors import ManifptError

    if isinstance(e, ManifptError):
        return str(e), e.exit_code
    if isinstance(e, ValidationError):
        errs = "; ".join(f"{'.'.join(map(str, er['loc'])) or 'settings'}: {er['msg']}" for er in e.errors()[:3])
        return f"invalid settings ({errs})", 2
    if isinstance(e, OSError) and e.filename is not None:
        return f"{display(e.filename)}: {e.strerror or e}", 1
    return None


class _Group(TyperGroup):
    """Turns expected failures anywhere below into a one-line message and an exit code (``--debug``:
    the traceback instead)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as e:
            found = expected_error(e)
            if found is None or _state["debug"] or os.environ.get("MANIFPT_DEBUG", "") not in ("", "0"):
                raise
            typer.echo(f"error: {display(found[0])}", err=True)
            raise typer.Exit(found[1]) from None


app = typer.Typer(help="ManiFPT: which generative model made an image, and which design choice left the trace.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False, cls=_Group)
artifacts_app = typer.Typer(help="Compute, inspect and plot ManiFPT artifacts.")
app.add_typer(artifacts_app, name="artifacts")
console = Console()

#: the options that every run over a real and a generated folder shares (fit, compare, openset)
RealOpt = Annotated[Path, typer.Option(help="Folder of real images (the manifold).")]
GeneratedOpt = Annotated[Path, typer.Option(help="Folder GENERATED/<model>/... (+ models.yaml).")]
SeedsOpt = Annotated[int, typer.Option(min=1, help="Number of seeds (0..N-1).")]
MaxPerClassOpt = Annotated[int | None, typer.Option(min=1, help="Subsample each class (seeded).")]
SizeOpt = Annotated[int | None, typer.Option(min=1, help="Resize every image to SIZE×SIZE.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bars.")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show the Python traceback of every error.")]
          = False) -> None:
    """ManiFPT: which generative model made an image, and which design choice left the trace."""
    _state["debug"] = debug


def print_bad_files(bad: list, where: Path | None, limit: int = 10) -> None:
    """The skipped-files summary every command prints: count, where the full list is, the first few."""
    if not bad:
        return
    see = f" (all in {where})" if where is not None else ""
    console.print(f"[yellow]{len(bad)} file(s) skipped or flagged[/yellow]{escape(see)}:", soft_wrap=True)
    for b in bad[:limit]:  # soft wrap: a path is never broken across lines (it can be copied)
        console.print(f"  {escape(display(b.path))}: {escape(b.reason)}", soft_wrap=True)
    if len(bad) > limit:
        console.print(f"  ... and {len(bad) - limit} more")


def _register_subapps() -> None:
    from .datasets_cli import data_app
    from .zoo.cli import zoo_app

    app.add_typer(zoo_app, name="zoo", help="Train and sample manifpt's zoo of generative models.")
    app.add_typer(data_app, name="data", help="Write the offline real datasets as image folders.")


_register_subapps()


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """`key=value` pairs (values parsed as YAML scalars) → dict."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"expected key=value, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


# The attributor's common flags, added to a command by ``@attributor_options`` (every field of
# attribute.config.AttributorConfig can also come from --config FILE, under `attributor:`); a flag
# left unset keeps the file's value or the default.
ATTRIBUTOR_FLAGS: dict[str, Any] = {
    "arch": Annotated[str | None, typer.Option(help="Attributor: auto, resnet50, resnet18, cifar_resnet, mlp, "
                                                    "linear (default: auto).")],
    "epochs": Annotated[int | None, typer.Option(min=1, help="Attributor training epochs (default: 40).")],
    "batch_size": Annotated[int | None, typer.Option(min=2, help="Attributor batch size (default: 64).")],
    "depth": Annotated[int | None, typer.Option(min=1, help="CIFAR-ResNet blocks per stage (default: 3).")],
    "lr": Annotated[float | None, typer.Option(min=0, help="Attributor learning rate (default: 1e-3, 1e-4 when "
                                                           "ImageNet-initialised).")],
    "patience": Annotated[int | None, typer.Option(min=1, help="Epochs without progress before stopping "
                                                               "[default: 6].")],
    "device": Annotated[str | None, typer.Option(help="Attributor device, e.g. cpu, cuda (default: CUDA if "
                                                      "present).")],
}


def flag_group(flags: dict[str, tuple[Any, Any]], call: Callable[..., Any],
               drop: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that adds ``flags`` (name → (annotation, default)) to a command, before ``--quiet``;
    ``call(command, given, kwargs)`` runs the command with the flags' values in ``given``."""
    def decorator(command: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(command, eval_str=True)  # typer reads the annotations off the new signature
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values() if p.name != drop]
        at = next((i for i, p in enumerate(params) if p.name == "quiet"), len(params))
        extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                 for k, (a, d) in flags.items()]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in flags}
            return call(command, given, kwargs)

        wrapper.__signature__ = sig.replace(parameters=params[:at] + extra + params[at:])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**typing.get_type_hints(command, include_extras=True),
                                   **{k: a for k, (a, _) in flags.items()}}
        wrapper.__annotations__.pop(drop, None)
        return wrapper

    return decorator


#: the attributor flags; the command receives them as one ``attributor`` dict (unset: None)
attributor_options = flag_group({k: (a, None) for k, a in ATTRIBUTOR_FLAGS.items()},
                                lambda command, given, kwargs: command(**kwargs, attributor=given), drop="attributor")

EXECUTOR_FLAGS: dict[str, tuple[Any, Any]] = {
    "executor": (Annotated[str, typer.Option(help="Where embedding, search and fits run: local or ray.")], "local"),
    "ray_address": (Annotated[str | None, typer.Option(help="Ray cluster to join (default: $RAY_ADDRESS, or a "
                                                            "new local instance).")], None),
    "workers": (Annotated[int, typer.Option(min=1, help="Ray: embedding actors and search shards.")], 2),
}


def _with_executor(command: Callable[..., Any], given: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    from .executor import using

    name = given["executor"]
    if name == "local":
        return command(**kwargs)
    if name != "ray":
        raise UsageError(f"unknown executor '{name}' (choose from: local, ray)")
    try:
        from .ray_executor import RayExecutor
    except ImportError as e:
        raise UsageError(f"--executor ray needs Ray: pip install 'manifpt[ray]' ({e})") from None
    with using(RayExecutor(address=given["ray_address"], workers=given["workers"])):
        return command(**kwargs)


#: ``--executor local|ray``, ``--ray-address``, ``--workers``: the command runs inside ``executor.using``
executor_options = flag_group(EXECUTOR_FLAGS, _with_executor)


#: images in the wild (``manifpt.perturb``, ``robustness``, ``audit``, group-aware splits), on fit and compare
WILD_FLAGS: dict[str, tuple[Any, Any]] = {
    "perturb": (Annotated[list[str] | None, typer.Option(
        help="Also test on perturbed copies of the test split (repeatable): jpeg:90,75,50 webp:80 resize:0.5 "
             "blur:1 noise:2 crop:0.9. Rows carry a 'perturbation' field.")], None),
    "augment": (Annotated[list[str] | None, typer.Option(
        help="Train on augmented images (repeatable, same specs): half of them get one of these; methods are "
             "named <name>+aug.")], None),
    "group_by": (Annotated[str | None, typer.Option(
        help="Group-aware split, every group on one side: a models.yaml column (e.g. model, with a factor "
             "target) or re:PATTERN on file names (e.g. 're:^(\\d+)_' for a source-photo id).")], None),
    "reencode": (Annotated[str | None, typer.Option(
        help="Re-encode every image (real and generated) the same way first: jpeg:Q or webp:Q (format-matched; "
             "see `manifpt audit`).")], None),
    "audit": (Annotated[bool, typer.Option(help="Shortcut audit of the files' metadata in the report.")], True),
}


def _wild_settings(given: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """The wild flags as ``merge_settings`` options (lists default to none)."""
    return {k: (k, ([] if v is None else list(v)) if k in ("perturb", "augment") else v) for k, v in given.items()}


wild_options = flag_group(WILD_FLAGS, lambda command, given, kwargs: command(**kwargs, wild=given), drop="wild")


@artifacts_app.callback(invoke_without_command=True)
@executor_options
def artifacts(
    ctx: typer.Context,
    real: Annotated[Path | None, typer.Option(help="Folder of real images (the manifold).")] = None,
    generated: Annotated[Path | None, typer.Option(help="Folder GENERATED/<model>/... (+ models.yaml).")] = None,
    space: Annotated[str, typer.Option(help="Embedding space: rgb, freq, sl, ssl.")] = "rgb",
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    size: Annotated[int | None, typer.Option(help="Resize every image to SIZE×SIZE (off by default).")] = None,
    space_opt: Annotated[list[str] | None, typer.Option(help="Space option key=value (repeatable).")] = None,
    backend: Annotated[str, typer.Option(help="Search engine: auto, faiss, torch.")] = "auto",
    shard_size: Annotated[int, typer.Option(min=1, help="Images per shard (resume granularity).")] = 2048,
    quiet: QuietOpt = False,
) -> None:
    """Compute artifacts of every generated image against the real manifold (resumable)."""
    if ctx.invoked_subcommand is not None:
        return
    if real is None or generated is None or out is None:
        raise typer.BadParameter("--real, --generated and --out are required")
    from .pipeline import artifacts_for_folders, check_names, check_paths

    check_names([space])
    check_paths(real, generated, out)

    store = artifacts_for_folders(real, generated, space, out, space_options=parse_options(space_opt),
                                  size=size, backend=backend, shard_size=shard_size, show_progress=not quiet)
    print_summary(store.root)


@artifacts_app.command("show")
def artifacts_show(directory: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Summarise an artifact directory."""
    print_summary(directory, as_json)


def print_summary(directory: Path, as_json: bool = False) -> None:
    from .errors import DataError
    from .store import ArtifactStore

    store = ArtifactStore(directory)
    problems = store.problems()
    if problems:
        raise DataError(f"{directory}: {'; '.join(problems[:3])}; rerun `manifpt artifacts` with the same "
                        "arguments to resume or repair it")
    summary = store.summarise()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    man = store.manifest
    t = Table(title=f"{directory}: {summary['n']} artifacts, space {man['space']} "
                    f"({summary['dim']}-d), real set {man['real']['n']} images")
    for col in ("model", "n", "‖a‖ mean", "‖a‖ median", "‖a‖ p95", "‖a‖ max", "distinct x*", "a = 0"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for model, s in summary["models"].items():
        t.add_row(model, str(s["n"]), f"{s['artifact_norm_mean']:.4g}", f"{s['artifact_norm_median']:.4g}",
                  f"{s['artifact_norm_p95']:.4g}", f"{s['artifact_norm_max']:.4g}", str(s["distinct_nn"]),
                  str(s["zero_artifacts"]))
    console.print(t)
    print_bad_files(store.bad_files(), directory / "bad_files.csv")


@artifacts_app.command("figure")
def artifacts_figure(directory: Path, out: Annotated[Path, typer.Option(help="PNG to write.")],
                     per_model: Annotated[int, typer.Option(help="Examples per model.")] = 2) -> None:
    """Triplets (x_G, x*, artifact) per model, as in the paper's Fig. 3–5."""
    from .figures import triplet_figure

    console.print(f"wrote {triplet_figure(directory, out, per_model)}")


@app.command("spaces")
def spaces() -> None:
    """List the registered embedding spaces."""
    from .spaces import list_spaces

    for name in list_spaces():
        typer.echo(name)


@app.command("check")
def check(folder: Path, size: Annotated[int | None, typer.Option()] = None) -> None:
    """Scan a folder of images and report the files that would be skipped, with the reason."""
    from .data import ImageSet

    s = ImageSet.from_folder(folder, size=size)
    console.print(f"{escape(display(folder))}: {len(s)} usable images of shape {s.shape}, {len(s.bad)} skipped")
    print_bad_files(s.bad, None, limit=len(s.bad))


def print_table(header: list[str], body: list[list[str]], title: str, left: tuple[str, ...] = ("method",)) -> None:
    t = Table(title=title)
    for h in header:
        t.add_column(h, justify="left" if h in left else "right")
    for r in body:
        t.add_row(*r)
    console.print(t)


def print_rows(rows: list[dict[str, Any]], title: str) -> None:
    from .report import results_table

    print_table(*results_table(rows), title, ("method", "space", "target", "metric"))


ConfigOpt = Annotated[Path | None, typer.Option(help="YAML of settings (any field of the command's config, the "
                                                     "attributor's under `attributor:`); options given on the "
                                                     "command line override it.")]


def merge_settings(ctx: typer.Context, config: Path | None, options: dict[str, tuple[str, Any]],
                   attributor: dict[str, Any]) -> dict[str, Any]:
    """Settings of a run: the ``--config`` YAML, then every option given on the command line.

    ``options``: setting → (parameter name, value); an option left at its default does not override
    the file. ``attributor``: the attributor flags (``None`` = not given)."""
    from .attribute.config import nest_attributor_keys
    from .cache import yaml_mapping

    settings: dict[str, Any] = {}
    if config is not None:
        settings = nest_attributor_keys(yaml_mapping(config.read_text(), config, empty_ok=True))
    for key, (param, value) in options.items():
        # (by name: typer may bring its own copy of click's ParameterSource enum)
        if key not in settings or getattr(ctx.get_parameter_source(param), "name", "") == "COMMANDLINE":
            settings[key] = value
    given = {k: v for k, v in attributor.items() if v is not None}
    if given:
        settings["attributor"] = {**(settings.get("attributor") or {}), **given}
    return settings


@app.command("fit")
@attributor_options
@wild_options
@executor_options
def fit(
    ctx: typer.Context,
    real: RealOpt,
    generated: GeneratedOpt,
    out: Annotated[Path, typer.Option(help="Run directory.")],
    space: Annotated[str, typer.Option(help="Embedding space: rgb, freq, sl, ssl.")] = "rgb",
    target: Annotated[str, typer.Option(help="'model' or a factor column of models.yaml.")] = "model",
    seeds: SeedsOpt = 3,
    config: ConfigOpt = None,
    attributor: dict[str, Any] | None = None,
    max_per_class: MaxPerClassOpt = None,
    size: SizeOpt = None,
    space_opt: Annotated[list[str] | None, typer.Option(help="Space option key=value (repeatable).")] = None,
    projection: Annotated[str, typer.Option(help="x* estimator: nn1, knn-mean, local-affine, autoencoder, raw.")]
    = "nn1",
    projection_opt: Annotated[list[str] | None, typer.Option(help="Projection option key=value.")] = None,
    tsne: Annotated[bool, typer.Option(help="Draw t-SNE panels.")] = True,
    allow_overlap: Annotated[bool, typer.Option(help="Allow evaluated images that are in the real set.")] = False,
    wild: dict[str, Any] | None = None,
    quiet: QuietOpt = False,
) -> None:
    """Artifacts (cached) → one attributor per seed → accuracy, F1, FD ratio, NMI, report."""
    from .fit import FitConfig, fit_run

    options = {"space": ("space", space), "target": ("target", target), "seeds": ("seeds", list(range(seeds))),
               "max_per_class": ("max_per_class", max_per_class), "size": ("size", size),
               "space_options": ("space_opt", parse_options(space_opt)), "tsne": ("tsne", tsne),
               "allow_overlap": ("allow_overlap", allow_overlap), "projection": ("projection", projection),
               "projection_options": ("projection_opt", parse_options(projection_opt)),
               **_wild_settings(wild or {})}
    settings = merge_settings(ctx, config, options, attributor or {})
    cfg = FitConfig(**{**settings, "real": str(real), "generated": str(generated)})
    res = fit_run(cfg, out, show_progress=not quiet)
    print_rows(res["rows"], f"{out}: {target} from {space.upper()} artifacts, chance "
                            f"{100 / len(res['run']['classes']):.1f} %")
    print_bad_files(res["bad"], out / "bad_files.csv")
    console.print(f"report: {out / 'report.html'}")


@app.command("compare")
@attributor_options
@wild_options
@executor_options
def compare(
    ctx: typer.Context,
    real: RealOpt,
    generated: GeneratedOpt,
    out: Annotated[Path, typer.Option(help="Output directory.")],
    config: ConfigOpt = None,
    methods: Annotated[str, typer.Option(help="Baselines: 'all', 'none' or a comma list.")] = "all",
    spaces: Annotated[str, typer.Option(help="ManiFPT spaces: comma list.")] = "rgb,freq,sl,ssl",
    target: Annotated[str, typer.Option(help="'model' or a factor column of models.yaml.")] = "model",
    seeds: SeedsOpt = 3,
    max_per_class: MaxPerClassOpt = None,
    size: SizeOpt = None,
    projection: Annotated[str, typer.Option(
        help="x* estimators, comma list: nn1, knn-mean, local-affine, autoencoder, raw.")] = "nn1",
    learners: Annotated[str, typer.Option(
        help="Learners on every space × estimator's artifacts, comma list: attributor (ManiFPT), linear, wang20, "
             "marra19 (docs/attribution.md).")] = "attributor",
    fuse: Annotated[bool, typer.Option(help="Add manifpt-fused: late fusion of those methods, chosen on the "
                                            "validation split.")] = False,
    attributor: dict[str, Any] | None = None,
    wild: dict[str, Any] | None = None,
    quiet: QuietOpt = False,
) -> None:
    """ManiFPT in every space and the prior methods on the same splits: one table like the paper's Tab. 1."""
    from .baselines import list_baselines
    from .compare import CompareConfig, compare_run
    from .report import paper_table

    names = list_baselines() if methods == "all" else [] if methods == "none" else [m for m in methods.split(",") if m]
    options = {"target": ("target", target), "spaces": ("spaces", [s for s in spaces.split(",") if s]),
               "methods": ("methods", names), "seeds": ("seeds", list(range(seeds))),
               "max_per_class": ("max_per_class", max_per_class), "size": ("size", size),
               "projections": ("projection", projection.split(",")),
               "learners": ("learners", [x for x in learners.split(",") if x]), "fuse": ("fuse", fuse),
               **_wild_settings(wild or {})}
    cfg = CompareConfig(**{**merge_settings(ctx, config, options, attributor or {}), "real": str(real),
                           "generated": str(generated)})
    rows, _ = compare_run(cfg, out, show_progress=not quiet)
    print_table(*paper_table(rows), f"{out}: {target} attribution")
    bad = out / "bad_files.csv"
    if bad.exists():
        from .store import read_bad_files

        print_bad_files(read_bad_files(bad), bad)
    console.print(f"report: {out / 'report.html'}")


@app.command("openset")
@attributor_options
@executor_options
def openset(
    ctx: typer.Context,
    real: RealOpt,
    generated: GeneratedOpt,
    out: Annotated[Path, typer.Option(help="Output directory.")],
    unknown: Annotated[str | None, typer.Option(help="Models held out of training (comma list): the unseen "
                                                     "sources, the same every seed.")] = None,
    protocol: Annotated[str | None, typer.Option(help="Or a protocol: random (3 sources drawn per seed), "
                                                      "unseen-<factor> (every source with one value of a "
                                                      "models.yaml factor, e.g. unseen-family).")] = None,
    spaces: Annotated[str, typer.Option(help="ManiFPT spaces: comma list.")] = "rgb",
    seeds: SeedsOpt = 3,
    config: ConfigOpt = None,
    attributor: dict[str, Any] | None = None,
    max_per_class: MaxPerClassOpt = None,
    size: SizeOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Open-set attribution: reject held-out sources (AUROC / OSCR / TNR@95 per score), enrol, discover."""
    from .attribute.config import AttributorConfig
    from .openset_run import run_openset

    settings = merge_settings(ctx, config, {}, attributor or {})
    held = None if unknown is None else [m.strip() for m in unknown.split(",") if m.strip()]
    rows = run_openset(real, generated, out, unknown=held, protocol=protocol,
                       spaces=[s.strip() for s in spaces.split(",") if s.strip()], seeds=list(range(seeds)),
                       attributor=AttributorConfig(**settings.get("attributor", {})), max_per_class=max_per_class,
                       size=size, show_progress=not quiet)
    print_rows([r for r in rows if r["metric"] in ("auroc", "closed_accuracy")],
               f"{out}: open set, held out {unknown or protocol}")
    console.print(f"report: {out / 'report.html'}")


@app.command("audit")
def audit(
    real: Annotated[Path, typer.Option(help="Folder of real images.")],
    generated: Annotated[Path, typer.Option(help="Folder GENERATED/<model>/...")],
    out: Annotated[Path | None, typer.Option(help="Write audit.json and audit.md here.")] = None,
    max_per_group: Annotated[int, typer.Option(min=2, help="Files read per group (seeded draw).")] = 1000,
) -> None:
    """Shortcut audit: can real vs generated, or the generated classes, be told apart from file metadata alone?"""
    from .audit import audit_folders, write_audit

    result = audit_folders(real, generated, max_per_group=max_per_group)
    (header, rows), (t_header, t_rows) = result.tables()
    print_table(header, rows, f"{display(generated)} vs {display(real)}: file metadata", ("group",))
    print_table(t_header, t_rows, "metadata-only classifiers (cross-validated)", ("question",))
    if out is not None:
        write_audit(result, out)
        console.print(f"wrote {escape(display(out / 'audit.json'))} and audit.md")
    for p, reason in result.errors[:10]:
        console.print(f"[yellow]unreadable[/yellow] {escape(display(p))}: {escape(reason)}", soft_wrap=True)
    if len(result.errors) > 10:
        console.print(f"  ... and {len(result.errors) - 10} more")
    if result.warning:
        console.print(f"[bold yellow]warning[/bold yellow]: {escape(result.warning)}", soft_wrap=True)
    else:
        console.print("no shortcut found: the file metadata does not tell the classes apart")


@app.command("predict")
@executor_options
def predict(
    model: Annotated[Path, typer.Option(help="Run directory written by `manifpt fit`.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    reject_score: Annotated[str, typer.Option(help="Unknown-score that rejects unseen sources: msp, energy, knn, "
                                                   "mahalanobis, manifold.")] = "knn",
    out: Annotated[Path | None, typer.Option(help="Stream predictions to this .csv or .jsonl (bounded memory, "
                                                  "for 10^4+ images) instead of printing them.")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="With --out: classes and probabilities per image.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="With --out: images decoded and attributed at once.")]
    = 256,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Attribute images with a fitted run: class (or `unknown`), probabilities, nearest real image."""
    from .fit import predict_files, predict_to_file
    from .openset import SCORES

    if reject_score not in SCORES:
        raise UsageError(f"unknown --reject-score '{reject_score}' (choose from: {', '.join(SCORES)})")
    if out is not None:
        s = predict_to_file(model, [str(p) for p in inputs], out, reject_score=reject_score, top_k=top_k,
                            batch_size=batch_size, show_progress=not quiet)
        console.print(f"{escape(display(out))}: {s['ok']} images attributed, {s['skipped']} skipped (listed with "
                      f"their reason), {s['images_per_s']} images/s")
        if s["skipped"] and not s["ok"]:
            raise typer.Exit(1)
        return
    res = predict_files(model, [str(p) for p in inputs], reject_score=reject_score)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
    else:
        for r in res["predictions"]:
            probs = ", ".join(f"{c}={p:.3f}" for c, p in sorted(r["probabilities"].items(), key=lambda kv: -kv[1]))
            known = (f" (score {r['unknown_score']:.2f}× threshold; nearest known {escape(r['nearest_known'])})"
                     if "unknown_score" in r else "")
            console.print(f"{escape(display(r['path']))}: [bold]{escape(r['predicted'])}[/bold]{known} "
                          f"({r['probability']:.3f}); {escape(probs)}; nearest real "
                          f"{escape(display(r['nearest_real']))} (d²={r['nn_sqdist']:.4g})")
    for w in res["warnings"]:
        console.print(f"[yellow]warning[/yellow] {escape(display(w['path']))}: {escape(w['reason'])}")
    for b in res["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {escape(display(b['path']))}: {escape(b['reason'])}")
    if res["skipped"] and not res["predictions"]:
        raise typer.Exit(1)


@app.command("enroll")
def enroll(
    model: Annotated[Path, typer.Argument(help="Run directory written by `manifpt fit`.")],
    folder: Annotated[Path, typer.Argument(help="Images of the new source.")],
    name: Annotated[str, typer.Option(help="Name of the new source.")],
) -> None:
    """Add a source to a fitted run from a few of its images, without retraining (nearest class mean)."""
    from .data import find_images
    from .fit import Run

    run = Run(model)
    files, bad = find_images(folder)
    images, _, skipped, _ = run.load_images(files)
    for p, reason in [(b.path, b.reason) for b in bad] + skipped:
        console.print(f"[yellow]skipped[/yellow] {escape(display(p))}: {escape(reason)}")
    if not len(images):
        raise UsageError(f"{folder}: no usable image to enroll")
    n = run.enroll(name, images)
    console.print(f"{model}: enrolled '{escape(name)}' from {n} images; `manifpt predict` now knows it")


@app.command("experiment")
@executor_options
def experiment(
    names: Annotated[list[str], typer.Argument(help="model-type, train-data, layer-type, cross-dataset, figures, "
                                                    "theory, density, projection, openset, robustness, or all.")],
    config: Annotated[str, typer.Option(help="Preset (default, quick, tiny) or YAML file.")] = "default",
    quick: Annotated[bool, typer.Option(help="Shorthand for --config quick.")] = False,
    out: Annotated[Path, typer.Option(help="Results directory.")] = Path("runs/experiments"),
    data: Annotated[Path, typer.Option(help="Where real sets and zoos are built and reused.")] = Path("runs/data"),
    retrain: Annotated[bool, typer.Option(help="Train zoo models even where their exact build ships with "
                                               "manifpt.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """The paper's experiments on the embedded benchmark: results.json + report.md/html per study."""
    from .experiments import load_experiment_config, run_experiments
    from .report import fmt_pm

    cfg = load_experiment_config("quick" if quick else config)
    res = run_experiments(names, cfg, out, data, show_progress=not quiet, retrain=retrain)
    t = Table(title=f"{out}: {', '.join(names)} ({cfg.name}), {res['meta']['total_seconds'] / 60:.1f} min "
                    "(accuracy, NMI and correlation rows; every row is in results.json)")
    for h in ("task", "method", "space", "target", "metric", "value"):
        t.add_column(h, justify="right" if h == "value" else "left")
    for r in res["rows"]:
        if r["metric"] in ("accuracy", "nmi_kmeans") or r["metric"].startswith("spearman"):
            pct = r["metric"] == "accuracy"
            t.add_row(r["task"], r["method"], r["space"], r["target"], r["metric"],
                      fmt_pm(r["mean"], r["std"], r["n_seeds"], pct) + (" %" if pct else ""))
    console.print(t)
    console.print(f"report: {out / 'report.html' if len(res['meta']['experiments']) > 1 else out}")


@app.command("demo")
def demo(out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/demo"),
         data: Annotated[Path, typer.Option(help="Where the real set and the zoo are built.")] = Path("runs/data"),
         retrain: Annotated[bool, typer.Option(help="Train the quick zoo here instead of sampling the "
                                                    "networks that ship with manifpt.")] = False,
         quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False) -> None:
    """Run the main job offline on the embedded default data (Fashion-MNIST + the quick zoo)."""
    from .demo import run_demo
    from .report import paper_table

    res = run_demo(out, data, show_progress=not quiet, retrain=retrain)
    n = len(res["models"])
    minutes = f"{res['seconds_total'] / 60:.1f} min ({res['seconds_data'] / 60:.1f} min data + zoo)"
    print_table(*paper_table(res["rows"]), f"model-type attribution, {n} generative models (chance "
                f"{100 / n:.1f} %), {minutes}")
    console.print(f"report: {out / 'report.html'}; results: {out / 'results.json'}; zoo: {res['gen']}")


if __name__ == "__main__":
    app()
