"""The `mibench` command line: list what is registered, preview data, build the zoo, run attacks,
build and check the leaderboard.

Every user-fixable problem surfaces as one `error: …` line and a non-zero exit status.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from mibench import __version__
from mibench.errors import MIBenchError
from mibench.run.table import text_table as _table

LIST_KINDS = ("datasets", "targets", "generators", "defenses", "attacks", "architectures", "metrics")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="mibench")
@click.option("-v", "--verbose", is_flag=True, help="Show debug logging.")
def cli(verbose: bool) -> None:
    """mibench — benchmark model inversion attacks and defenses on image classifiers.

    \b
    Quick start (embedded default, CPU, minutes):
      mibench list targets          what can be attacked
      mibench zoo build             train the embedded target zoo and priors
      mibench run                   run the default suite and print its table
      mibench leaderboard build     write leaderboard/leaderboard.csv and the web page
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")


@cli.command("list")
@click.argument("kind", type=click.Choice(LIST_KINDS))
def list_cmd(kind: str) -> None:
    """Show the registered KIND: datasets, targets, generators, defenses, attacks, architectures, metrics.

    Targets, generators and defenses are YAML cards (in targets/, generators/, defenses/ of the
    current directory, $MIBENCH_CARDS, or this checkout); the rest are implementations in code.
    """
    from mibench import listing

    click.echo(_table(*listing.rows(kind)))


@cli.group()
def data() -> None:
    """Inspect datasets."""


@data.command("preview")
@click.argument("name")
@click.option("--split", default="private-train", show_default=True,
              help="Which split to show, e.g. private-train, private-test, public, public-shifted.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG file to write.")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Folder of a real dataset on disk (not needed for synthfaces).")
@click.option("--identities", default=8, show_default=True, help="Rows: how many identities (classes).")
@click.option("--per-identity", default=10, show_default=True, help="Columns: images per identity.")
@click.option("--resolution", type=int, default=None, help="Render/resize to this size (default: the dataset's).")
@click.option("--scale", default=2, show_default=True, help="Upscale the sheet (nearest) for viewing.")
def data_preview(name: str, split: str, out: Path, root: Path | None, identities: int, per_identity: int,
                 resolution: int | None, scale: int) -> None:
    """Write a contact sheet of dataset NAME: one row per identity, its images across the row."""
    from mibench.data import load_dataset
    from mibench.data.preview import write_contact_sheet

    params = {"resolution": resolution} if resolution else {}
    ds = load_dataset(name, split, root, **params)
    path = write_contact_sheet(ds, out, identities=identities, per_identity=per_identity, scale=scale)
    click.echo(f"wrote {path}: {min(identities, max(ds.num_classes, 1))} identities × up to {per_identity} "
               f"images of {name}:{split} ({len(ds)} images, {ds.num_classes} classes, {ds.resolution} px)")


@cli.group()
def zoo() -> None:
    """Build and inspect the model zoo (targets, evaluation models, priors)."""


@zoo.command("build")
@click.argument("names", nargs=-1)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … or auto.")
@click.option("--jobs", type=int, default=None,
              help="Parallel builds (default: one per CPU core on CPU, 1 on GPU).")
@click.option("--force", is_flag=True, help="Retrain locally even when a shipped or cached copy exists "
              "(the local build then replaces the shipped one on this machine).")
def zoo_build(names: tuple[str, ...], device: str, jobs: int | None, force: bool) -> None:
    """Train the zoo entries NAMES (default: every card with a training recipe that is not built yet,
    training-seed replicates `<card>@1`, `<card>@2` included).

    Entries shipped with mibench (status 'shipped') are used as they are when their card hash
    matches; others are trained into $MIBENCH_CACHE (default ~/.cache/mibench) by card hash + code
    version, so a second call returns at once. Prints a table of natural accuracies.
    """
    import time

    from mibench import zoo as zoo_mod
    from mibench.run.execute import resolve_device

    t0 = time.time()
    rows = zoo_mod.build_zoo(list(names) or None, device=str(resolve_device(device)), jobs=jobs, force=force)
    click.echo(_table(rows, ["name", "role", "defense", "status", "natural_acc", "defense_cost", "train_s",
                             "prior_quality"]))
    click.echo(f"zoo ready in {time.time() - t0:.0f}s")


@zoo.command("verify")
@click.argument("names", nargs=-1)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … or auto.")
@click.option("--jobs", type=int, default=None, help="Parallel retrains (default: one per CPU core on CPU).")
@click.option("--attack", default="ppa", show_default=True,
              help="The short attack run against shipped and retrained weights (its default preset and prior); "
                   "'none' skips it.")
@click.option("--attack-classes", type=int, default=10, show_default=True, help="Classes 0..N-1 of the short attack.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a setting of the short attack.")
def zoo_verify(names: tuple[str, ...], device: str, jobs: int | None, attack: str, attack_classes: int,
               overrides: tuple[str, ...]) -> None:
    """Retrain shipped targets NAMES (default: all) in a temporary folder and report how close each
    retrain gets: natural accuracy shipped vs retrained, prediction agreement, identical weights, and
    the acc@1 of one short attack (same seed, settings and classes) against the shipped and the
    retrained weights."""
    from mibench.run.execute import resolve_device
    from mibench.zoo.shipping import verify

    check = None if attack == "none" else {"attack": attack, "classes": attack_classes,
                                           "overrides": _parse_overrides(overrides)}
    rows = verify(list(names) or None, device=str(resolve_device(device)), jobs=jobs, attack=check)
    cols = ["name", "shipped_acc", "retrained_acc", "delta_pts", "prediction_agreement", "identical_weights", "train_s"]
    if check is not None:
        cols += ["attack", "attack_shipped", "attack_retrained", "attack_delta_pts"]
    click.echo(_table(rows, cols))


@zoo.command("calibrate")
@click.argument("target")
@click.option("--param", required=True, help="The defense parameter to search, e.g. alpha (NLS), beta (MID).")
@click.option("--values", required=True, help="Comma-separated values, weakest first, e.g. -0.02,-0.05,-0.1.")
@click.option("--budget", type=float, default=None,
              help="Largest natural-accuracy drop allowed (fraction; default: the defense card's utility_cost).")
@click.option("--device", default="auto", show_default=True)
def zoo_calibrate(target: str, param: str, values: str, budget: float | None, device: str) -> None:
    """Train TARGET's defense at each strength and report the natural-accuracy drop against the
    undefended target of the same recipe; marks the strongest value within the utility budget."""
    from mibench.run.execute import resolve_device
    from mibench.zoo.utility import calibrate

    try:
        vals = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise MIBenchError(f"cannot parse --values '{values}'", field="--values",
                           fix="give numbers separated by commas, e.g. -0.02,-0.05") from None
    rows = calibrate(target, param, vals, budget, device=str(resolve_device(device)))
    for r in rows:
        r["natural_acc"] = f"{100 * r['natural_acc']:.1f}%"
        r["chosen"] = "<- strongest within budget" if r["chosen"] else ""
    click.echo(_table(rows, ["param", "value", "natural_acc", "drop_pts", "within_budget", "chosen"]))


@zoo.command("ship")
@click.argument("names", nargs=-1)
def zoo_ship(names: tuple[str, ...]) -> None:
    """Maintainers: copy local builds of NAMES (default: the default zoo with its replicates, and the
    attribute readers) into mibench/shipped/, with a manifest each. Unchanged weights are left alone."""
    from mibench.zoo.shipping import ship, shipped_size

    rows = ship(list(names) or None)
    click.echo(_table(rows, ["name", "status", "MB", "file"]))
    click.echo(f"shipped store: {shipped_size() / 2**20:.1f} MB")


@zoo.command("ship-stages")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
def zoo_ship_stages(run_dirs: tuple[Path, ...]) -> None:
    """Maintainers: ship the stages an attack trained in finished RUN_DIRS (LOKT's T-ACGAN and
    surrogates) for their target, so every machine attacks that target with the same stages."""
    from mibench.zoo.shipping import ship_stages, shipped_size

    rows = ship_stages(list(run_dirs))
    click.echo(_table(rows, ["name", "status", "MB", "file"]))
    click.echo(f"shipped store: {shipped_size() / 2**20:.1f} MB")


@zoo.command("preview")
@click.argument("generator")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG file to write.")
@click.option("--rows", default=8, show_default=True)
@click.option("--cols", default=8, show_default=True)
@click.option("--psi", "psi", type=float, default=None, help="Truncation ψ (default: the card's).")
@click.option("--cutoff", type=int, default=None, help="Truncation cutoff layer (default: the card's).")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def zoo_preview(generator: str, out: Path, rows: int, cols: int, psi: float | None, cutoff: int | None, seed: int,
                device: str) -> None:
    """Write a grid of samples from prior GENERATOR (trained first if needed)."""
    from mibench.cards import get_card
    from mibench.run.execute import resolve_device
    from mibench.zoo.preview import sample_grid

    card = get_card("generator", generator)
    path = sample_grid(card, out, rows=rows, cols=cols, psi=card.truncation_psi if psi is None else psi,
                       cutoff=card.truncation_cutoff if cutoff is None else cutoff, seed=seed,
                       device=resolve_device(device))
    click.echo(f"wrote {path}")


@cli.command("init")
@click.argument("private", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--public", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of public (attacker-side) images: the prior trains on them, LOKT too.")
@click.option("--name", required=True, help="Card name prefix, e.g. mydata (cards: mydata-resnet, ...).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Where targets/ and generators/ are written (a card folder: the current directory, or $MIBENCH_CARDS).")
@click.option("--force", is_flag=True, help="Overwrite existing card files.")
def init_cmd(private: Path, public: Path, name: str, out: Path, force: bool) -> None:
    """Write starter cards for your own labelled image folder PRIVATE (PRIVATE/<class>/*.png|jpg):
    a target, an evaluation model and a prior, sized from the data (resolution, classes, images)."""
    from mibench.starter import summarize, write_starter_cards

    s = summarize(private, public)
    click.echo(f"{private}: {len(s.classes)} classes, {s.images} images, median {s.size} px; "
               f"{public}: {s.public_images} public images")
    for p in write_starter_cards(name, private, public, out, force=force):
        click.echo(f"wrote {p}")
    click.echo(f"next: mibench zoo build {name}-resnet {name}-evaluator {name}-stylegan2 && "
               f"mibench run --target {name}-resnet --attack ppa")


@cli.command("run")
@click.option("--target", "-t", default=None, help="Target card (default: the whole default suite).")
@click.option("--attack", "-a", default=None, help="ppa, ifgmi, lokt … (see `mibench list attacks`).")
@click.option("--prior", "-p", default=None, help="Prior card (default: the one made for the target's dataset).")
@click.option("--classes", default=None, help="Target classes, e.g. 0-9 or 0,5,7 (default: all; suite: the "
              "quick protocol's 0-9).")
@click.option("--protocol", type=click.Choice(["standard", "quick"]), default=None,
              help="standard: every class (the leaderboard's protocol); quick: classes 0-9 (the suite's default).")
@click.option("--seed", default=0, show_default=True, help="Run seed: same seed, same results.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … or auto.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="Where run folders go.")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Continue an interrupted run folder, redoing only unfinished classes.")
@click.option("--preset", default=None, help="Attack preset (default: from the target's dataset).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override an attack setting, e.g. --set steps=20 (repeatable; values are YAML).")
@click.option("--query-budget", type=int, default=None,
              help="Black-box and label-only attacks: most target queries of the run (past it the run stops, "
                   "writing stopped.json).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Also compute this optional metric kind (repeatable; see `mibench list metrics`).")
@click.option("--replicate", type=click.IntRange(min=0), default=0, show_default=True,
              help="Suite: attack training-seed replicate k of every target (`<card>@k`; 0 is the card itself).")
@click.option("--no-build", is_flag=True, help="Fail instead of training missing zoo entries.")
def run_cmd(target: str | None, attack: str | None, prior: str | None, classes: str | None, protocol: str | None,
            seed: int,
            device: str, out: Path, resume: Path | None, preset: str | None, overrides: tuple[str, ...],
            query_budget: int | None, metrics: tuple[str, ...], replicate: int, no_build: bool) -> None:
    """Attack registered targets and write standardized results.

    \b
    Without --target/--attack: the DEFAULT SUITE on the embedded synthfaces setting — every
    synthfaces target × every attack, on classes 0-9 (the quick protocol; --protocol standard:
    all 100 classes, the leaderboard's protocol) — building the zoo first when missing, then a
    results table (--attack ppa,ifgmi without --target: the suite with those attacks only). With --target and --attack: one run, written to OUT/<run-id>/ (images, latents,
    per-class CSV, reconstruction grid, entry.json). Shard one run over processes with
    `torchrun --nproc-per-node N -m mibench run …`.
    """
    from mibench.run import suite
    from mibench.run.spec import RunSpec, parse_classes
    from mibench.run.table import format_table

    over = _parse_overrides(overrides)
    cls = parse_classes(classes)
    if target is not None and attack is None and resume is None:
        raise click.UsageError("--target needs --attack (or omit both for the default suite)")
    if target is None and resume is None and query_budget is not None:
        raise click.UsageError("--query-budget is for one run: give --target and --attack (a query attack)")
    if target is None and resume is None:
        # --attack without --target: the default suite restricted to those attacks (comma-separated)
        attacks = [a.strip() for a in attack.split(",") if a.strip()] if attack else None
        entries = suite.run_suite(attacks=attacks, classes=cls, seed=seed, device=device, out=out,
                                  build=not no_build, extra_metrics=list(metrics), protocol=protocol,
                                  replicate=replicate)
        click.echo(format_table(entries))
        return
    if replicate:
        raise click.UsageError("--replicate is for the suite; for one run, name the replicate: --target CARD@k")
    spec = RunSpec(target=target or "", attack=attack or "", prior=prior, classes=cls, seed=seed, preset=preset,
                   overrides=over, query_budget=query_budget, extra_metrics=list(metrics), protocol=protocol)
    entry = suite.run_single(spec, out=out, device=device, resume=resume, build=not no_build)
    if entry:
        click.echo(format_table([entry]))


@cli.command("sweep")
@click.option("--target", "-t", required=True, help="Target card.")
@click.option("--attack", "-a", required=True, help="The attack (the page plots query attacks: black-box, label-only).")
@click.option("--vary", required=True, metavar="KEY=V1,V2,…",
              help="The attack setting that scales its queries, and its values, e.g. --vary max_iters=50,100,200.")
@click.option("--prior", "-p", default=None, help="Prior card (default: the one made for the target's dataset).")
@click.option("--classes", default=None, help="Target classes, e.g. 0-9 (default: all).")
@click.option("--protocol", type=click.Choice(["standard", "quick"]), default=None, help="standard or quick.")
@click.option("--seed", default=0, show_default=True, help="Run seed.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 … or auto.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True,
              help="Where run folders go.")
@click.option("--preset", default=None, help="Attack preset (default: from the target's dataset).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Other attack settings (repeatable).")
@click.option("--query-budget", type=int, default=None, help="Most target queries of each run.")
@click.option("--no-build", is_flag=True, help="Fail instead of training missing zoo entries.")
def sweep_cmd(target: str, attack: str, vary: str, prior: str | None, classes: str | None, protocol: str | None,
              seed: int, device: str, out: Path, preset: str | None, overrides: tuple[str, ...],
              query_budget: int | None, no_build: bool) -> None:
    """Attack accuracy against queries spent: one run per value of an attack setting, then a table of
    acc@1 (± its 95 % interval) against the queries each run made. Each point is an ordinary run (its
    entry feeds the page's accuracy-vs-queries plot); finished points are not run again."""
    from mibench.run.spec import RunSpec, parse_classes
    from mibench.run.sweep import parse_vary, run_sweep, sweep_table

    key, values = parse_vary(vary)
    spec = RunSpec(target=target, attack=attack, prior=prior, classes=parse_classes(classes), seed=seed,
                   preset=preset, overrides=_parse_overrides(overrides), query_budget=query_budget, protocol=protocol)
    entries = run_sweep(spec, key, values, out=out, device=device, build=not no_build)
    if entries and all(entries):
        click.echo(sweep_table(entries, key, values))


@cli.group()
def leaderboard() -> None:
    """Build the leaderboard table and web page; run the regression check."""


@leaderboard.command("build")
@click.option("--from", "runs", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Also import the entries of the run folders under this folder (repeatable); default: runs/ when it exists.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboard"),
              show_default=True, help="Leaderboard folder (entries/, leaderboard.csv, site/).")
def leaderboard_build(runs: tuple[Path, ...], root: Path) -> None:
    """Validate every entry in ROOT/entries (plus imported runs) and write ROOT/leaderboard.csv and
    ROOT/site/index.html — a static page (open it from disk): sortable, filterable table,
    attack × defense matrix, privacy–utility plot, reconstructions and full configs."""
    from mibench.leaderboard.build import build

    if not runs and Path("runs").is_dir():  # after `mibench run`, its results join the page
        click.echo("importing run entries from runs/ (pass --from to choose other folders)")
        runs = (Path("runs"),)
    res = build(root, list(runs))
    click.echo(f"{res['entries']} entries ({res['imported']} imported) → {res['csv']} and {res['page']}")


@leaderboard.command("compare")
@click.argument("attack")
@click.argument("baseline")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboard"),
              show_default=True, help="Leaderboard folder (its entries/).")
@click.option("--protocol", type=click.Choice(["standard", "quick", "all"]), default="standard", show_default=True)
@click.option("--metric", default="acc@1", show_default=True, help="Per-class metric to compare, e.g. reid@1.")
def leaderboard_compare(attack: str, baseline: str, root: Path, protocol: str, metric: str) -> None:
    """Print ATTACK against BASELINE on every target both were run on: each one's pooled metric and
    the paired difference (same identities and seeds) with its 95 % interval (`*`: excludes 0).
    Either may be ATTACK:PRIOR, e.g. `ppa:synthfaces32-stylegan2-v2 ppa:synthfaces32-stylegan2`
    (one attack through two priors)."""
    from mibench.leaderboard.compare import format_compare
    from mibench.leaderboard.entries import collect

    _check_class_metric(metric)
    entries = [e for e, _ in collect(root / "entries")]
    click.echo(format_compare(entries, attack, baseline, metric, None if protocol == "all" else protocol))


def _check_class_metric(metric: str) -> None:
    """Refuse a name that is not a per-class metric column."""
    from mibench.errors import MIBenchError
    from mibench.registry import METRICS, suggest

    names = [c.name for k in METRICS.names() if METRICS.get(k).scope == "class" for c in METRICS.get(k).columns]
    if metric not in names:
        raise MIBenchError(f"'{metric}' is not a per-class metric{suggest(metric, names)}", field="--metric",
                           fix=f"use one of: {', '.join(names)}")


@leaderboard.command("pooled")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("leaderboard"),
              show_default=True, help="Leaderboard folder (its entries/).")
@click.option("--protocol", type=click.Choice(["standard", "quick", "all"]), default="standard", show_default=True)
@click.option("--metric", default="acc@1", show_default=True,
              help="Per-class metric to pool, e.g. reid@1 (ground-truth re-identification on synthfaces).")
def leaderboard_pooled(root: Path, protocol: str, metric: str) -> None:
    """Print the results pooled over replicates (training and attack seeds): acc@1 (or --metric)
    with its 95 % interval and what it covers, and each defense's paired effect on it against the
    undefended target (`*`: its interval excludes 0)."""
    from mibench.leaderboard.entries import collect
    from mibench.leaderboard.pooled import format_pooled

    _check_class_metric(metric)
    entries = [e for e, _ in collect(root / "entries")]
    click.echo(format_pooled(entries, None if protocol == "all" else protocol, metric))


@leaderboard.command("check")
@click.option("--suite", "suite_file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("leaderboard") / "regression.yaml", show_default=True, help="Regression suite file.")
@click.option("--entries", type=click.Path(file_okay=False, path_type=Path),
              default=Path("leaderboard") / "regression", show_default=True, help="Baseline entries.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs") / "regression",
              show_default=True, help="Where the re-runs are written.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=None, help="Variant: re-run with another attack seed (measures the spread).")
@click.option("--set", "overrides", multiple=True, metavar="ATTACK:KEY=VALUE",
              help="Variant: override an attack setting, e.g. ppa:steps=20 (a planted weakening; repeatable).")
@click.option("--attack", "attacks", multiple=True, help="Only the runs of this attack (repeatable).")
@click.option("--replicate", type=int, default=0, help="Variant: attack training-seed replicate k of each target.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the comparison rows as JSON.")
@click.option("--rebaseline", is_flag=True, help="Maintainers: write the re-runs as the new baselines (no comparison).")
def leaderboard_check(suite_file: Path, entries: Path, out: Path, device: str, seed: int | None,
                      overrides: tuple[str, ...], attacks: tuple[str, ...], replicate: int, json_out: Path | None,
                      rebaseline: bool) -> None:
    """Re-run the regression suite and fail when an attack's accuracy, compared class by class with
    the committed baseline entry of the same configuration, moves beyond its tolerance. Prints a
    diff table (the change is the mean paired per-class change, in points)."""
    import json

    from mibench.leaderboard.check import load_suite, run_check

    per_attack: dict[str, dict] = {}
    for item in overrides:
        attack, sep, rest = item.partition(":")
        if not sep:
            raise MIBenchError(f"cannot parse --set '{item}'", field="--set", fix="use ATTACK:KEY=VALUE, e.g. ppa:steps=20")
        per_attack.setdefault(attack.strip(), {}).update(_parse_overrides((rest,)))
    rows = run_check(load_suite(suite_file).only(list(attacks)), entries_dir=entries, out=out, device=device,
                     seed=seed, overrides=per_attack, replicate=replicate, rebaseline=rebaseline)
    if rebaseline:
        click.echo(f"baselines written to {entries}")
        return
    click.echo(_table([r.as_dict() for r in rows], ["run", "metric", "baseline", "now", "delta", "classes",
                                                     "tolerance", "status"]))
    if json_out is not None:
        json_out.write_text(json.dumps([r.as_json() for r in rows], indent=2))
    failed = [r for r in rows if not r.ok]
    if failed:
        click.echo(f"regression check FAILED: {len(failed)} of {len(rows)} values left the tolerance band", err=True)
        sys.exit(1)
    click.echo(f"regression check passed ({len(rows)} values within tolerance)")


def _parse_overrides(items: tuple[str, ...]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MIBenchError(f"cannot parse --set '{item}'", field="--set", fix="use KEY=VALUE, e.g. --set steps=20")
        out[key.strip()] = yaml.safe_load(value)
    return out


def main() -> None:
    """Console-script entry point: run the CLI, turning MIBenchError into one clear line and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except MIBenchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
