"""Shortcut audit: can the labels be told apart from the file metadata alone, without the pixels?

Detectors of generated images often learn the file format instead of the generator: trained on PNG
fakes and JPEG reals, they flag every PNG (and miss every JPEG fake). An attributor has the same
risk one level down, when one model's images were saved differently from the others'. The pixels a
decoder returns carry the format too (JPEG's 8×8 blocks and quantisation, chroma subsampling), so
an attribution score means little when the metadata already separates the classes.

``audit`` reads only file headers (``file_metadata``: format, mode, bit depth, size, estimated JPEG
quality, chroma subsampling, EXIF, ICC profile, bytes per pixel), summarises them per group (real
and every generated class) and asks two cross-validated metadata-only classifiers:

- "real vs generated": real images against all generated ones;
- "generated classes": the generated classes against each other (skipped with fewer than two).

Bytes per pixel is a feature for lossy files only (0 for lossless ones): a lossless file's size is
a function of its pixels (a blurry generator's PNGs are smaller), so it measures content, not how
the file was encoded, and the audit must not flag a real difference between generators as a
shortcut. For a lossy file the size follows mostly from the encoder's settings.

A test warns when its balanced accuracy is at least halfway from chance to perfect (``WARN_MARGIN``):
the audit is meant to flag shortcuts that would carry a classifier most of the way, not the small
departures from chance that cross-validation noise and weak, harmless correlations give.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from .cache import atomic_write_text, write_json
from .data import BadFile, find_images, generated_root_extra, real_root_extra
from .errors import DataError, UsageError, display
from .splits import subsample

FORMAT = "manifpt-audit/1"
#: a test warns at ``balanced_accuracy >= chance + WARN_MARGIN · (1 − chance)`` (see the module docstring)
WARN_MARGIN = 0.5
#: a field is "telling" when it alone scores at least this far from chance to perfect (and among the top 3)
TELL_MARGIN = 0.1
TOP_FIELDS = 3
#: what a warning advises
ADVICE = ("an attributor can learn the file format instead of the generator; re-encode every image the same way "
          "(--reencode jpeg:Q) or fix the data")
#: a class is singled out when the metadata classifier finds it with this recall and precision
SINGLE_OUT = 0.9
REAL, VS_REAL, VS_CLASSES = "real", "real vs generated", "generated classes"
#: classifier features: categorical ones are one-hot encoded, the others are numbers
CATEGORICAL = ("format", "mode", "subsampling")
FEATURES = ("format", "mode", "bit_depth", "width", "height", "jpeg_quality", "subsampling", "exif", "icc",
            "bytes_per_pixel")

# --------------------------------------------------------------------------- one file

#: IJG / ITU-T T.81 Annex K luminance quantisation table, natural (row-major) order
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
], np.int64)


def _ijg_tables() -> np.ndarray:
    """100×64: the luminance table libjpeg's ``jpeg_set_quality(q, force_baseline=TRUE)`` writes, q = 1..100."""
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)  # integer division, as in jpeg_quality_scaling
    return np.clip((_STD_LUMA[None, :] * scale[:, None] + 50) // 100, 1, 255)


_IJG = _ijg_tables()
_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def jpeg_quality(table: Sequence[int]) -> int:
    """The IJG quality 1..100 whose scaled standard luminance table is closest (L1) to ``table``
    (64 entries, natural order); exact for files written by libjpeg (Pillow, OpenCV, most tools)."""
    t = np.asarray(table, np.int64).reshape(-1)
    if t.size != 64:
        raise ValueError(f"a quantisation table has 64 entries, got {t.size}")
    return int(np.argmin(np.abs(_IJG - t[None, :]).sum(axis=1))) + 1


def _png_bit_depth(path: Path) -> int | None:
    """Bits per sample from a PNG's IHDR (Pillow reads 16-bit RGB as 8-bit "RGB" and does not say);
    8 for palette images, whose palette entries are 8 bits per channel whatever the index depth."""
    with path.open("rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR":
        return None
    return 8 if head[25] == 3 else head[24]


def _webp_lossless(path: Path) -> bool | None:
    """Whether a WebP file holds lossless (VP8L) data, from its RIFF chunks; ``None`` if none is found.

    A simple file starts with its ``VP8 `` (lossy) or ``VP8L`` (lossless) chunk; an extended one
    (``VP8X``) lists ICC/EXIF/alpha chunks first; an animation nests them in ``ANMF`` frames (the first
    frame decides)."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
            return None
        end = os.fstat(fh.fileno()).st_size
        pos = 12
        while pos + 8 <= end:
            fh.seek(pos)
            tag, size = struct.unpack("<4sI", fh.read(8))
            if tag == b"VP8L":
                return True
            if tag == b"VP8 ":
                return False
            if tag == b"ANMF":
                pos += 8 + 16  # frame header: offset, size, duration, flags; its chunks follow
                continue
            pos += 8 + size + (size & 1)
    return None


def _bit_depth(im: Image.Image, path: Path) -> int:
    if im.format == "PNG" and (depth := _png_bit_depth(path)) is not None:
        return depth
    if im.mode == "1":
        return 1
    if im.mode.startswith("I;16"):
        return 16
    if im.mode in ("I", "F"):
        return 32
    return 8


def _has_exif(im: Image.Image) -> bool:
    if im.info.get("exif"):
        return True
    try:
        return len(im.getexif()) > 0
    except Exception:  # a malformed EXIF block is still an EXIF block, but Pillow may not parse it
        return False


def _lossy(im: Image.Image, path: Path) -> bool:
    if isinstance(im, JpegImagePlugin.JpegImageFile):
        return True
    if im.format == "WEBP":
        return not _webp_lossless(path)  # no VP8L chunk found: treated as lossy
    if im.format == "TIFF":
        return str(im.info.get("compression", "")).lower() in ("jpeg", "tiff_jpeg", "webp")
    return False


def file_metadata(path: str | Path) -> dict[str, Any]:
    """What a file's header says about how it was encoded (no pixel data is decoded).

    Fields: ``format`` (Pillow's, "?" if it has none), ``mode``, ``bit_depth`` (bits per channel),
    ``width``, ``height``, ``jpeg_quality`` (IJG quality estimated from the luminance quantisation
    table; ``None`` for non-JPEG), ``subsampling`` ("4:4:4", "4:2:2", "4:2:0" or "other" for JPEG,
    ``None`` otherwise), ``exif``, ``icc`` (bools), ``bytes_per_pixel`` (file size / pixels) and
    ``lossy`` (JPEG, WebP without lossless data, JPEG-compressed TIFF). A file that cannot be read
    gives ``{"error": reason}``; this function never raises for a corrupt file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return {"error": "empty file (0 bytes)"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # only the header is read
            with Image.open(path) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    return {"error": f"declares an empty image ({w}x{h})"}
                is_jpeg = isinstance(im, JpegImagePlugin.JpegImageFile)
                tables = getattr(im, "quantization", None) or {}
                quality = jpeg_quality(tables[0]) if is_jpeg and 0 in tables else None
                sampling = JpegImagePlugin.get_sampling(im) if is_jpeg else None
                return {
                    "format": im.format or "?",
                    "mode": im.mode,
                    "bit_depth": _bit_depth(im, path),
                    "width": w,
                    "height": h,
                    "jpeg_quality": quality,
                    "subsampling": None if sampling is None else _SUBSAMPLING.get(sampling, "other"),
                    "exif": _has_exif(im),
                    "icc": bool(im.info.get("icc_profile")),
                    "bytes_per_pixel": size / (w * h),
                    "lossy": _lossy(im, path),
                }
    except Image.DecompressionBombError as e:
        return {"error": f"decompression bomb ({e})"}
    except UnidentifiedImageError:
        return {"error": "not a recognised image (Pillow cannot identify it)"}
    except OSError as e:  # with an errno: the file system; without: Pillow on a damaged file
        return {"error": f"cannot read file ({e.strerror})" if e.errno is not None
                else f"truncated or corrupt header ({e})"}
    except (SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError) as e:
        return {"error": f"corrupt header ({type(e).__name__}: {e})"}


# --------------------------------------------------------------------------- summaries


def _shares(values: Sequence[Any]) -> dict[str, float]:
    """Share of each value, most common first (``{}`` for no values)."""
    n = len(values)
    return {str(v): c / n for v, c in Counter(values).most_common()} if n else {}


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def summarise(metas: Sequence[dict[str, Any]], total: int) -> dict[str, Any]:
    """One group's summary: ``files`` audited of ``total``, shares of each format / mode / bit depth /
    subsampling (JPEG files only), EXIF and ICC shares (0..1), the most common size and the number of
    distinct sizes, the median JPEG quality (``None`` without JPEG files) and median bytes per pixel."""
    sizes = Counter(f"{m['width']}x{m['height']}" for m in metas)
    jpeg = [m for m in metas if m["jpeg_quality"] is not None]
    n = len(metas)
    return {
        "files": n,
        "total": total,
        "format": _shares([m["format"] for m in metas]),
        "mode": _shares([m["mode"] for m in metas]),
        "bit_depth": _shares([m["bit_depth"] for m in metas]),
        "subsampling": _shares([m["subsampling"] for m in metas if m["subsampling"] is not None]),
        "exif": sum(m["exif"] for m in metas) / n if n else 0.0,
        "icc": sum(m["icc"] for m in metas) / n if n else 0.0,
        "lossy": sum(m["lossy"] for m in metas) / n if n else 0.0,
        "size": sizes.most_common(1)[0][0] if sizes else None,
        "distinct_sizes": len(sizes),
        "jpeg_quality": _median([m["jpeg_quality"] for m in jpeg]),
        "bytes_per_pixel": _median([m["bytes_per_pixel"] for m in metas]),
    }


# --------------------------------------------------------------------------- classifiers


def _feature_rows(metas: Sequence[dict[str, Any]], fields: Sequence[str] = FEATURES) -> list[dict[str, Any]]:
    """Classifier inputs: None → "none" (categorical) or 0, bools → 0/1, bytes per pixel only for lossy files."""
    rows = []
    for m in metas:
        row: dict[str, Any] = {}
        for f in fields:
            v = m[f]
            if f in CATEGORICAL:
                row[f] = "none" if v is None else str(v)
            elif f == "bytes_per_pixel":
                row[f] = float(v) if m["lossy"] else 0.0
            else:
                row[f] = 0.0 if v is None else float(v)
        rows.append(row)
    return rows


def _encode(rows: list[dict[str, Any]]) -> np.ndarray:
    from sklearn.feature_extraction import DictVectorizer  # one-hot for strings, numbers pass through

    return DictVectorizer(sparse=False).fit_transform(rows)


def _cv_predict(X: np.ndarray, y: np.ndarray, seed: int, folds: int, forest: bool) -> np.ndarray | None:
    """Cross-validated predictions; ``None`` when every feature is constant (no fit: the score is chance)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    if X.shape[1] == 0 or np.all(X[:1] == X):
        return None
    k = min(folds, int(min(Counter(y.tolist()).values())))
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    model = (RandomForestClassifier(n_estimators=100, class_weight="balanced", random_state=seed, n_jobs=1)
             if forest else DecisionTreeClassifier(class_weight="balanced", random_state=seed))
    return cross_val_predict(model, X, y, cv=cv)


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray | None) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return 1.0 / len(np.unique(y)) if pred is None else float(balanced_accuracy_score(y, pred))


def _warn_level(chance: float) -> float:
    return chance + WARN_MARGIN * (1.0 - chance)


def metadata_test(question: str, metas: Sequence[dict[str, Any]], labels: Sequence[str], *, seed: int = 0,
                  folds: int = 5) -> dict[str, Any]:
    """Can ``labels`` be predicted from the metadata? Cross-validated random forest, balanced accuracy.

    ``telling_fields``: the fields that alone (a decision tree on that field, same folds) score at least
    ``TELL_MARGIN`` of the way from chance to perfect, best first, at most ``TOP_FIELDS``; ties keep the
    order of ``FEATURES``. Classes with fewer than 2 files cannot be cross-validated and are left out
    (``left_out``); with fewer than 2 classes left the test is not run (``balanced_accuracy`` None).
    ``recall``: per class, the share of its files the metadata classifier puts in it. The balanced
    accuracy averages over classes, so one class in an odd format among many (K ≥ 4) stays below the
    warning level; such a class is ``singled_out`` (recall and precision ≥ ``SINGLE_OUT``) and the
    test warns too: the attributor can recognise that class by its files.
    """
    y_all = np.asarray(labels, dtype=object).astype(str)
    counts = Counter(y_all.tolist())
    left_out = sorted(c for c, n in counts.items() if n < 2)
    keep = np.flatnonzero(~np.isin(y_all, left_out)) if left_out else np.arange(len(y_all))
    y = y_all[keep]
    classes = sorted(set(y.tolist()))
    out: dict[str, Any] = {"question": question, "n": len(y), "classes": classes, "left_out": left_out,
                           "balanced_accuracy": None, "chance": None, "warn": False, "telling_fields": []}
    if len(classes) < 2:
        out["note"] = "fewer than 2 classes with at least 2 readable files; not tested"
        return out
    chance = 1.0 / len(classes)
    kept = [metas[i] for i in keep]
    pred = _cv_predict(_encode(_feature_rows(kept)), y, seed, folds, forest=True)
    score = _balanced_accuracy(y, pred)
    recall = {c: 1.0 / len(classes) if pred is None else float(np.mean(pred[y == c] == c)) for c in classes}
    singled = [] if pred is None else [c for c in classes if recall[c] >= SINGLE_OUT and np.any(pred == c)
                                       and np.mean(y[pred == c] == c) >= SINGLE_OUT]
    single = {f: _balanced_accuracy(y, _cv_predict(_encode(_feature_rows(kept, [f])), y, seed, folds, forest=False))
              for f in FEATURES}
    telling = [f for f in sorted(FEATURES, key=lambda f: -single[f])
               if single[f] >= chance + TELL_MARGIN * (1 - chance)][:TOP_FIELDS]
    out.update(balanced_accuracy=score, chance=chance,
               warn=bool(score >= _warn_level(chance) - 1e-12 or (len(classes) > 2 and singled)),
               telling_fields=telling, field_scores=single, recall=recall, singled_out=singled)
    return out


# --------------------------------------------------------------------------- result


@dataclass
class AuditResult:
    """Per-group metadata summaries, the metadata-only tests, and the files that could not be read."""

    groups: dict[str, dict[str, Any]]
    tests: list[dict[str, Any]]
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def warning(self) -> str | None:
        """``None``, or what the metadata alone tells apart (with the scores and fields) and what to do."""
        parts = []
        for t in self.tests:
            if not t["warn"]:
                continue
            what = "real from generated" if t["question"] == VS_REAL else "the generated classes apart"
            fields = f"; fields: {', '.join(t['telling_fields'])}" if t["telling_fields"] else ""
            if t["balanced_accuracy"] < _warn_level(t["chance"]) - 1e-12:
                what = f"{', '.join(t.get('singled_out', []))} from the other generated classes"
            parts.append(f"file metadata alone tells {what} (balanced accuracy {t['balanced_accuracy']:.2f}, "
                         f"chance {t['chance']:.2f}{fields})")
        return f"{' and '.join(parts)}: {ADVICE}." if parts else None

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "warn_margin": WARN_MARGIN, "groups": _plain(self.groups),
                "tests": _plain(self.tests), "errors": [{"path": p, "reason": r} for p, r in self.errors],
                "warning": self.warning}

    def tables(self) -> list[tuple[list[str], list[list[str]]]]:
        """(header, rows) of the per-group summaries and of the metadata-only tests (for reports)."""
        header = ["group", "files", "format", "mode", "size", "JPEG q", "subsampling", "EXIF", "ICC", "bytes/px"]
        rows = []
        for name, g in self.groups.items():
            files = f"{g['files']}" if g["files"] == g["total"] else f"{g['files']} of {g['total']}"
            size = "–" if g["size"] is None else (g["size"] if g["distinct_sizes"] <= 1
                                                  else f"{g['size']} (+{g['distinct_sizes'] - 1} other)")
            rows.append([name, files, _fmt_shares(g["format"]), _fmt_shares(g["mode"]), size,
                         _fmt_num(g["jpeg_quality"], "{:.0f}"), _fmt_shares(g["subsampling"]),
                         f"{100 * g['exif']:.0f}%", f"{100 * g['icc']:.0f}%", _fmt_num(g["bytes_per_pixel"], "{:.2f}")])
        tests = [[t["question"], _fmt_num(t["balanced_accuracy"], "{:.2f}"), _fmt_num(t["chance"], "{:.2f}"),
                  str(t["n"]), str(len(t["classes"])), "**yes**" if t["warn"] else "no",
                  ", ".join(t["telling_fields"]) or "–"] for t in self.tests]
        return [(header, rows), (["question", "balanced accuracy", "chance", "files", "classes", "warn",
                                  "telling fields"], tests)]

    def markdown(self) -> str:
        (header, rows), (t_header, t_rows) = self.tables()
        out = ["# File metadata audit", "",
               "Can the labels be told apart from the file headers alone? Summaries of the audited files per group:",
               ""]
        out += _table(header, rows)
        out += ["", "Cross-validated metadata-only classifiers (balanced accuracy; warn at "
                f"{WARN_MARGIN:g} of the way from chance to perfect, or when one class is singled out):", ""]
        out += _table(t_header, t_rows)
        if (w := self.warning) is not None:
            out += ["", f"**Warning:** {w}"]
        if self.errors:
            out += ["", f"{len(self.errors)} file(s) could not be read:", ""]
            out += [f"- `{display(p)}`: {r}" for p, r in self.errors]
        return "\n".join(out) + "\n"


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars → Python numbers, tuples → lists."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows])


def _fmt_shares(shares: dict[str, float], top: int = 3) -> str:
    if not shares:
        return "–"
    items = list(shares.items())
    if len(items) == 1:
        return items[0][0]
    text = ", ".join(f"{k} {100 * v:.0f}%" for k, v in items[:top])
    return text + (", …" if len(items) > top else "")


def _fmt_num(v: float | None, fmt: str) -> str:
    return "–" if v is None else fmt.format(v)


# --------------------------------------------------------------------------- audit


def _read_all(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """``file_metadata`` of every path, a few threads at once (header reads wait on the disk, not the CPU)."""
    if len(paths) < 64:
        return [file_metadata(p) for p in paths]
    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(file_metadata, paths, chunksize=64))


def audit(real_paths: list[Path], generated_paths: list[Path], labels: list[str], *, max_per_group: int = 1000,
          seed: int = 0, folds: int = 5) -> AuditResult:
    """Audit the metadata of real and generated files (``labels``: the class of each generated file).

    At most ``max_per_group`` files per group (real, and each class) are read, a seeded draw, so the
    audit stays quick on 10⁵–10⁶ files; unreadable files land in ``errors`` and are left out. A
    generated class named "real" is shown as "real (generated)" in ``groups``.
    """
    if len(labels) != len(generated_paths):
        raise UsageError(f"{len(generated_paths)} generated files but {len(labels)} labels; give one label per file")
    if not real_paths or not generated_paths:
        raise UsageError("the audit needs real and generated files "
                         f"(got {len(real_paths)} real, {len(generated_paths)} generated)")
    if max_per_group < 2 or folds < 2:
        raise UsageError(f"max_per_group and folds must be at least 2 (got {max_per_group}, {folds})")
    labels = [str(c) for c in labels]
    group_of = [REAL] * len(real_paths) + [f"{c} (generated)" if c == REAL else c for c in labels]
    paths = [Path(p) for p in [*real_paths, *generated_paths]]
    picked = subsample(group_of, max_per_group, seed)
    metas = _read_all([paths[i] for i in picked])
    errors = [(str(paths[i]), m["error"]) for i, m in zip(picked, metas, strict=True) if "error" in m]
    ok = [(int(i), m) for i, m in zip(picked, metas, strict=True) if "error" not in m]
    totals = Counter(group_of)
    names = [REAL, *sorted(set(group_of) - {REAL})]
    groups = {g: summarise([m for i, m in ok if group_of[i] == g], totals[g]) for g in names}
    n_real = len(real_paths)
    tests = [metadata_test(VS_REAL, [m for _, m in ok], ["real" if i < n_real else "generated" for i, _ in ok],
                           seed=seed, folds=folds)]
    gen = [(i, m) for i, m in ok if i >= n_real]
    if len(set(labels)) >= 2:
        tests.append(metadata_test(VS_CLASSES, [m for _, m in gen], [labels[i - n_real] for i, _ in gen],
                                   seed=seed, folds=folds))
    return AuditResult(groups, tests, sorted(errors))


def _model_folders(root: Path) -> tuple[dict[str, list[Path]], list[BadFile]]:
    """Image files per model (an immediate sub-folder of ``root`` holding images) and what was left out;
    the same layout rules as ``GeneratedSet.from_folder`` (models.yaml/csv, ``_*`` folders ignored)."""
    files, bad = find_images(root, ignore=generated_root_extra)
    models: dict[str, list[Path]] = {}
    for p in files:
        parts = p.relative_to(root).parts
        if len(parts) < 2:
            bad.append(BadFile(str(p), "not inside a model sub-folder GENERATED/<model>/"))
        else:
            models.setdefault(parts[0], []).append(p)
    return models, bad


def audit_folders(real: str | Path, generated: str | Path, **kw: Any) -> AuditResult:
    """``audit`` of a real folder and a generated folder whose immediate sub-folders are the models.

    Only headers are read (not ``ImageSet.from_folder``, which decodes every image). Files the folder
    scan leaves out (wrong extension, dangling links, images outside a model folder, ...) are added to
    ``errors`` with their reason; keyword arguments go to ``audit``.
    """
    real, generated = Path(real), Path(generated)
    real_files, bad = find_images(real, ignore=real_root_extra)
    models, gen_bad = _model_folders(generated)
    if not real_files:
        raise DataError(f"{real}: no image files")
    if not models:
        raise DataError(f"{generated}: no image files inside model folders GENERATED/<model>/")
    gen_files = [p for m in sorted(models) for p in models[m]]
    labels = [m for m in sorted(models) for _ in models[m]]
    result = audit(real_files, gen_files, labels, **kw)
    result.errors = sorted(result.errors + [(b.path, b.reason) for b in bad + gen_bad])
    return result


def write_audit(result: AuditResult, out: Path) -> None:
    """Write ``out/audit.json`` and ``out/audit.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", result.to_json())
    atomic_write_text(out / "audit.md", result.markdown())
