"""The OpenKBP challenge's own code as the peer of vmat-native's importer and scores (bench/openkbp_scores.sh).

It imports provided_code/data_loader.py and dose_evaluation_class.py from a copy of ababier/open-kbp (OPENKBP_DIR)
without running the package's __init__ (which imports Keras for the baseline network, not needed to load or score).
Needs NumPy, pandas, more-itertools and tqdm (Debian: python3-numpy python3-pandas python3-more-itertools
python3-tqdm).

  loader-check  OPENKBP_DIR CASES_DIR PATIENT...      our case files against the challenge's loader (axes, CT, masks)
  predictions   OPENKBP_DIR PRED_CSV_DIR PRED_NPY_DIR PATIENT...
                a deterministic imperfect prediction per patient, made in the challenge's frame from its loader's
                dose: written as the challenge's submission CSV and, mapped by the documented axis order, as .npy
  evaluate      OPENKBP_DIR PRED_CSV_DIR PATIENT...   the challenge's DoseEvaluator; prints its figures as JSON
A PATIENT is split/pt_N (e.g. test-pats/pt_241).
"""
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

GRID = 128
CT_OFFSET = 1000  # HU = stored value - 1000 (src/openkbp/layout.ts)


def challenge(openkbp_dir):
    """The challenge's DataLoader and DoseEvaluator, imported from its sources without the package __init__."""
    code = Path(openkbp_dir) / "provided_code"
    package = types.ModuleType("provided_code")
    package.__path__ = [str(code)]
    sys.modules["provided_code"] = package
    from provided_code.data_loader import DataLoader
    from provided_code.dose_evaluation_class import DoseEvaluator

    return DataLoader, DoseEvaluator


def patient_paths(openkbp_dir, patients):
    return [Path(openkbp_dir) / "provided-data" / p for p in patients]


def to_case(volume):
    """The challenge's [i, j, k] array in the case files' [z, y, x]: z = 127 - k, y = i, x = j."""
    return np.ascontiguousarray(np.transpose(volume, (2, 0, 1))[::-1])


def loader_check(openkbp_dir, cases_dir, patients):
    DataLoader, _ = challenge(openkbp_dir)
    loader = DataLoader(patient_paths(openkbp_dir, patients), batch_size=1)
    loader.set_mode("training_model")
    worst = {"ct_hu": 0.0, "dose_gy": 0.0, "mask_voxels": 0, "body_voxels": 0, "spacing_mm": 0.0}
    for patient in patients:
        batch = loader.get_patients([Path(patient).name])
        case = np.load(Path(cases_dir) / f"{Path(patient).name}.npz")
        ct = to_case(batch.ct[0, ..., 0]) - CT_OFFSET
        worst["ct_hu"] = max(worst["ct_hu"], float(np.abs(case["ct"].astype(np.float64) - ct).max()))
        worst["dose_gy"] = max(worst["dose_gy"], float(np.abs(case["dose"].astype(np.float64) - to_case(batch.dose[0, ..., 0])).max()))
        worst["body_voxels"] = max(worst["body_voxels"], int((case["body"].astype(bool) != to_case(batch.possible_dose_mask[0, ..., 0]).astype(bool)).sum()))
        names = list(case["structures"])
        for r, roi in enumerate(loader.full_roi_list):
            theirs = to_case(batch.structure_masks[0, ..., r]).astype(bool)
            ours = case["masks"][names.index(roi)].astype(bool) if roi in names else np.zeros_like(theirs)
            worst["mask_voxels"] = max(worst["mask_voxels"], int((ours != theirs).sum()))
        vd = batch.voxel_dimensions[0]
        worst["spacing_mm"] = max(worst["spacing_mm"], float(np.abs(case["spacing_mm"] - [vd[2], vd[0], vd[1]]).max()))
    print(json.dumps({"patients": len(patients), "max_differences": worst}))


def predictions(openkbp_dir, csv_dir, npy_dir, patients):
    """Smoothed, rescaled and noisy reference doses, with stray dose outside the possible-dose mask in half of them
    (which the challenge's dose error counts), so that every score is far from zero and structure-dependent."""
    import pandas as pd
    from scipy.ndimage import gaussian_filter

    DataLoader, _ = challenge(openkbp_dir)
    loader = DataLoader(patient_paths(openkbp_dir, patients), batch_size=1)
    loader.set_mode("training_model")
    Path(csv_dir).mkdir(parents=True, exist_ok=True)
    Path(npy_dir).mkdir(parents=True, exist_ok=True)
    for n, patient in enumerate(patients):
        pid = Path(patient).name
        batch = loader.get_patients([pid])
        rng = np.random.RandomState(1000 + n)
        dose = batch.dose[0, ..., 0]
        mask = batch.possible_dose_mask[0, ..., 0]
        i = np.arange(GRID)[:, None, None]
        k = np.arange(GRID)[None, None, :]
        pred = gaussian_filter(dose, sigma=1.0 + 0.2 * n) * (1 + 0.04 * np.sin(i / 9.0 + n) * np.cos(k / 13.0))
        pred = np.maximum(pred + rng.normal(0, 0.5, pred.shape), 0) * mask
        if n % 2 == 1:
            pred = pred + 2.0 * (1 - mask) * (np.abs(i - 64) < 20)
        pred = pred.astype(np.float32)  # what a case file holds; the CSV carries the same values
        flat = pred.flatten()
        nonzero = np.nonzero(flat)[0]
        pd.DataFrame(data=flat[nonzero].astype(np.float64), index=nonzero, columns=["data"]).to_csv(Path(csv_dir) / f"{pid}.csv", float_format="%.9g")
        np.save(Path(npy_dir) / f"{pid}.npy", to_case(pred))


def evaluate(openkbp_dir, csv_dir, patients):
    DataLoader, DoseEvaluator = challenge(openkbp_dir)
    started = time.perf_counter()
    reference = DataLoader(patient_paths(openkbp_dir, patients))
    prediction = DataLoader([Path(csv_dir) / f"{Path(p).name}.csv" for p in patients])
    evaluator = DoseEvaluator(reference, prediction)
    evaluator.evaluate()
    dose_score, dvh_score = evaluator.get_scores()
    seconds = time.perf_counter() - started

    def table(df):
        out = {}
        for pid in df.index:
            row = {}
            for (metric, roi), value in df.loc[pid].items():
                value = float(value)
                if not np.isnan(value):
                    row.setdefault(roi, {})[metric] = value
            out[pid] = row
        return out

    print(json.dumps({
        "dose_score": float(dose_score),
        "dvh_score": float(dvh_score),
        "dose_errors": {pid: float(v) for pid, v in evaluator.dose_errors.items()},
        "reference": table(evaluator.reference_dvh_metrics_df),
        "prediction": table(evaluator.prediction_dvh_metrics_df),
        "seconds": seconds,
    }))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "loader-check":
        loader_check(args[0], args[1], args[2:])
    elif command == "predictions":
        predictions(args[0], args[1], args[2], args[3:])
    elif command == "evaluate":
        evaluate(args[0], args[1], args[2:])
    else:
        sys.exit(f"unknown command {command}: expected loader-check, predictions or evaluate")
