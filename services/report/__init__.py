"""The run report: `runs/<id>/report.html` with the scorecard, plots and annotated videos."""

from services.report.build import ReportInputError, ReportResult, load_summary, write_report

__all__ = ["ReportInputError", "ReportResult", "load_summary", "write_report"]
