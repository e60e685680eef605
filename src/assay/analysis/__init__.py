"""Analysis: Methods run on evaluation outputs and other data (see DESIGN §2 "analysis").

``AnalysisContext`` gives a Method its arguments, its input data and (in notebooks) the
widgets that publish scores. Importing this package does not import Jupyter.
"""

from __future__ import annotations

from assay.analysis.context import AnalysisContext

__all__ = ["AnalysisContext"]
