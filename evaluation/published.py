"""Published numbers the report shows beside ours (EVAL.md section 4, with its sources and caveats).

T2I-CompBench: T2I-R1 paper, Table 1 (read via third-party copies). GenEval: the Janus-Pro paper. WISE: the WISE
README (Janus-Pro, legacy WiScore, GPT-4o judge), the T2I-R1 paper (legacy) and WISE's leaderboard.md
(WISE_Verified overall only). Not found: Janus-Pro-1B on T2I-CompBench, any numeracy / 3D-spatial row, T2I-R1 on
GenEval (third-party tables give about 0.79) and on WISE_Verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from evaluation.catalog import COMPBENCH, GENEVAL, WISE


@dataclass(frozen=True)
class PublishedRow:
    name: str
    source: str
    values: dict[str, float] = field(default_factory=dict)  # by category
    overall: Optional[float] = None
    protocol: str = ""  # WISE: "legacy" or "verified" (the judge and rubric differ: never mix them)


_T2I_R1 = "T2I-R1 paper, Table 1 (third-party copies)"
_JANUS = "Janus-Pro paper"
_WISE_README = "WISE README (legacy WiScore, GPT-4o judge)"

PUBLISHED: dict[str, list[PublishedRow]] = {
    COMPBENCH: [
        PublishedRow(
            "Janus-Pro-7B",
            _T2I_R1,
            {
                "color": 0.6359,
                "shape": 0.3528,
                "texture": 0.4936,
                "spatial": 0.2061,
                "non_spatial": 0.3085,
                "complex": 0.3559,
            },
            0.3921,
        ),
        PublishedRow(
            "T2I-R1",
            _T2I_R1,
            {
                "color": 0.8130,
                "shape": 0.5852,
                "texture": 0.7243,
                "spatial": 0.3378,
                "non_spatial": 0.3090,
                "complex": 0.3993,
            },
            0.5281,
        ),
    ],
    GENEVAL: [
        PublishedRow(
            "Janus-Pro-1B",
            _JANUS,
            {
                "single_object": 0.98,
                "two_object": 0.82,
                "counting": 0.51,
                "colors": 0.89,
                "position": 0.65,
                "color_attr": 0.56,
            },
            0.73,
        ),
        PublishedRow(
            "Janus-Pro-7B",
            _JANUS,
            {
                "single_object": 0.99,
                "two_object": 0.89,
                "counting": 0.59,
                "colors": 0.90,
                "position": 0.79,
                "color_attr": 0.66,
            },
            0.80,
        ),
    ],
    WISE: [
        PublishedRow(
            "Janus-Pro-1B",
            _WISE_README,
            {"Culture": 0.20, "Time": 0.28, "Space": 0.45, "Biology": 0.24, "Physics": 0.32, "Chemistry": 0.16},
            0.26,
            "legacy",
        ),
        PublishedRow(
            "Janus-Pro-7B",
            _WISE_README,
            {"Culture": 0.30, "Time": 0.37, "Space": 0.49, "Biology": 0.36, "Physics": 0.42, "Chemistry": 0.26},
            0.35,
            "legacy",
        ),
        PublishedRow(
            "T2I-R1",
            "T2I-R1 paper (third-party copy; legacy WiScore)",
            {"Culture": 0.56, "Time": 0.55, "Space": 0.63, "Biology": 0.54, "Physics": 0.55, "Chemistry": 0.30},
            0.54,
            "legacy",
        ),
        PublishedRow("Janus-Pro-7B", "WISE leaderboard.md (WISE_Verified)", overall=0.3340, protocol="verified"),
        PublishedRow("Janus-Pro-1B", "WISE leaderboard.md (WISE_Verified)", overall=0.2650, protocol="verified"),
    ],
}


def published_rows(benchmark: str, wise_protocol: str) -> list[PublishedRow]:
    """The rows comparable in kind to ours (for WISE: the same protocol's)."""
    rows = PUBLISHED[benchmark]
    return [r for r in rows if benchmark != WISE or r.protocol == wise_protocol]
