"""The verification report (`attnverify report`): build and render.
"""

from attnverify._faces import face

_EXPORTS = {
    "DEFAULT_TRAINING": "build",
    "DTYPES": "build",
    "HEADER": "render",
    "PACKAGES": "render",
    "PRESETS": "build",
    "ReportContent": "render",
    "ReportOptions": "build",
    "STYLE": "render",
    "environment": "render",
    "html_page": "render",
    "markdown": "render",
    "obtain_model": "build",
    "run_claims": "build",
    "run_report": "build",
    "summary": "sections",
    "summary_lines": "sections",
    "model_used": "sections",
    "claim_sections": "sections",
    "PAPER_SETUP": "sections",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = face(__name__, _EXPORTS)
