"""Published PSNR figures for the nets this project reproduces, so that `runner test` can put a
model's scores beside them with the difference (the papers' protocol: runner/score/protocol.py).

A net is matched by its name in the net file (`name:`), as the configs under configs/ name
them, and by scale. Figures are the papers' own tables, rounded as printed."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """One published table: a short label for the report, and where it is printed."""

    label: str
    citation: str


FSRCNN_PAPER = Source("paper", "Dong, Loy & Tang, Accelerating the Super-Resolution "
                      "Convolutional Neural Network, ECCV 2016: FSRCNN trained on the 91 images "
                      "and General-100, in its comparison with the state of the art")
LAPSRN_TABLE = Source("re-evaluation", "Lai et al., Deep Laplacian Pyramid Networks for Fast "
                      "and Accurate Super-Resolution, CVPR 2017: FSRCNN in its table of "
                      "state-of-the-art methods, re-evaluated on Set5, Set14 and BSD100")
SRCNN_PAPER = Source("paper", "Dong et al., Image Super-Resolution Using Deep Convolutional "
                     "Networks, TPAMI 2016: SRCNN 9-1-5 trained on the 91 images")

# {net name: {source: {(set, scale): PSNR}}}
FIGURES = {
    "FSRCNN-56_12_4": {
        FSRCNN_PAPER: {("Set5", 2): 37.00, ("Set5", 3): 33.16, ("Set5", 4): 30.71,
                       ("Set14", 2): 32.63, ("Set14", 3): 29.43, ("Set14", 4): 27.59},
        LAPSRN_TABLE: {("Set5", 2): 37.05, ("Set5", 3): 33.18, ("Set5", 4): 30.72,
                       ("Set14", 2): 32.66, ("Set14", 3): 29.37, ("Set14", 4): 27.61,
                       ("BSD100", 2): 31.53, ("BSD100", 3): 28.53, ("BSD100", 4): 26.98},
    },
    "SRCNN-9-1-5": {
        SRCNN_PAPER: {("Set5", 3): 32.39},
    },
}


@dataclass(frozen=True)
class Comparison:
    """A model's mean PSNR on one set at one scale beside a published figure."""

    dataset: str
    scale: int
    source: Source
    ours: float
    published: float

    @property
    def difference(self):
        return self.ours - self.published


def comparisons(mean_rows):
    """A Comparison for every mean row (runner/score/evaluate.py Mean) whose method is a net
    named in FIGURES and whose set and scale a source has a figure for, in row order, then
    source order."""
    return [Comparison(row.dataset, row.scale, source, row.psnr, figures[(row.dataset, row.scale)])
            for row in mean_rows
            for source, figures in FIGURES.get(row.method, {}).items()
            if (row.dataset, row.scale) in figures]


def _by_set(found):
    """{(set, scale, ours): {source: Comparison}} in first-seen order, and the sources."""
    rows = {}
    for item in found:
        rows.setdefault((item.dataset, item.scale, item.ours), {})[item.source] = item
    return rows, list(dict.fromkeys(item.source for item in found))


def format_comparisons(found):
    """The comparisons as text lines, one per set and scale: each source's figure and our
    difference from it, the sources cited below. No lines for none."""
    if not found:
        return []
    rows, sources = _by_set(found)
    return (["published PSNR (ours minus theirs):"]
            + [f"  {dataset} x{scale}: ours {ours:.2f}; "
               + ", ".join(f"{source.label} {item.published:.2f} ({item.difference:+.2f})"
                           for source, item in by_source.items())
               for (dataset, scale, ours), by_source in rows.items()]
            + [f"  {source.label}: {source.citation}" for source in sources])


def markdown_comparisons(found):
    """The comparisons as a Markdown section: a table of ours, each source's figure and the
    difference, the sources cited below it. No lines for none."""
    if not found:
        return []
    rows, sources = _by_set(found)
    header = ["set", "scale", "ours"] + [f"{source.label} (difference)" for source in sources]
    lines = ["## Published figures (PSNR)", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for (dataset, scale, ours), by_source in rows.items():
        cells = [f"{by_source[source].published:.2f} ({by_source[source].difference:+.2f})"
                 if source in by_source else "" for source in sources]
        lines.append("| " + " | ".join([dataset, f"x{scale}", f"{ours:.2f}", *cells]) + " |")
    return lines + [""] + [f"- {source.label}: {source.citation}" for source in sources]
