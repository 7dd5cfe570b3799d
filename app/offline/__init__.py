"""Offline analysis of run files (notebook API and `steerlab analyze`).

    from app.offline import open_analysis
    run = open_analysis("runs/squeezed.h5")              # the run's own calibration
    scan = run.ratio_scan("x", gap_px=1.0)               # Fig. 2a/3a: Analysis with arrays (G,)
    scan.splitting_ratios, scan.best["E_EPR_AB"].value   # corrected criteria (raw: scan.result)
"""
from app.offline.analysis import Analysis, RunAnalysis, open_analysis

__all__ = ["Analysis", "RunAnalysis", "open_analysis"]
