#!/usr/bin/env python3
"""DICOM-RT fixtures for test/dicom*.test.ts, made at test time by independent tools.

    dicom-fixtures.py OUT CASE.npz [CASE.npz ...]

Each format 1 case (from `vmat-native synth`) becomes a CT + RTSTRUCT + RTDOSE set written by `plastimatch convert`
(ROI names spelled as a TPS would), then:
  OUT/set/P<n>/        the sets; P1 gets an RTPLAN (pydicom), P2 a dose on a coarser grid offset from the CT's
  OUT/ref/             references: plastimatch's own rasterisation of P1's RTSTRUCT (P1_masks.npz), P2's dose
                       trilinearly on the CT grid by SciPy (P2_dose_on_ct.npy, NaN outside), dicompyler-core DVHs
  OUT/variants/<ts>/   P1 re-encoded by dcmconv: implicit VR LE, explicit VR BE, deflated, bare data sets
  OUT/orient/<name>/   P1 turned: prone (HFP), feet first (FFS), oblique (rotated 30 degrees about z)
  OUT/relative/        P1 with a RELATIVE dose (fractions of 70 Gy)
  OUT/beams/           P1 with its dose as two BEAM doses of half each
  OUT/bad/             one patient per defect, and one good patient
OUT/fixtures.json lists what was made.
"""
import copy
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import map_coordinates

ROI_NAMES = {
    'PTV70': 'PTV_70', 'PTV56': 'PTV56', 'Prostate': 'CTV_Prostate', 'Rectum': 'RECTUM', 'Bladder': 'Bladder',
    'Femur_L': 'Femur_Head_L', 'Femur_R': 'Femoral Head R', 'Bowel': 'Bowel_Bag',
}


def run(*args):
    done = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.exit(f'{" ".join(args)} failed:\n{done.stdout}')


def write_mha(path, array, origin_xyz, spacing_xyz, etype):
    z, y, x = array.shape
    header = (f'ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n'
              f'Offset = {origin_xyz[0]} {origin_xyz[1]} {origin_xyz[2]}\nTransformMatrix = 1 0 0 0 1 0 0 0 1\n'
              f'ElementSpacing = {spacing_xyz[0]} {spacing_xyz[1]} {spacing_xyz[2]}\nDimSize = {x} {y} {z}\n'
              f'ElementType = {etype}\nElementDataFile = LOCAL\n')
    with open(path, 'wb') as f:
        f.write(header.encode())
        f.write(np.ascontiguousarray(array).tobytes())


def read_mha(path):
    raw = open(path, 'rb').read()
    marker = b'ElementDataFile = LOCAL\n'
    start = raw.index(marker) + len(marker)
    fields = dict(line.split(' = ', 1) for line in raw[:start].decode().strip().split('\n'))
    dims = [int(v) for v in fields['DimSize'].split()]
    dtype = {'MET_UCHAR': np.uint8, 'MET_FLOAT': np.float32, 'MET_SHORT': np.int16, 'MET_UINT': np.uint32}[fields['ElementType']]
    return np.frombuffer(raw[start:], dtype).reshape(dims[::-1])


def make_set(npz_path, work, out_dir, patient_id, coarse_dose):
    """A plastimatch CT + RTSTRUCT + RTDOSE of one case; returns the grid and, for a coarse dose, its reference."""
    case = np.load(npz_path)
    sz, sy, sx = (float(v) for v in case['spacing_mm'])
    Z, Y, X = case['ct'].shape
    origin = (-0.5 * (X - 1) * sx + 1.25, -0.5 * (Y - 1) * sy - 2.5, -40.0)  # x, y, z of voxel 0
    os.makedirs(work, exist_ok=True)
    write_mha(f'{work}/ct.mha', case['ct'].astype(np.int16), origin, (sx, sy, sz), 'MET_SHORT')
    names = [ROI_NAMES.get(str(n), str(n)) for n in case['structures']] + ['BODY', 'Couch']
    couch = np.zeros((Z, Y, X), np.uint8)
    couch[:, Y - 3:Y - 1, X // 4:3 * X // 4] = 1  # a slab under the patient, outside the body: kept under its own name
    masks = np.concatenate([case['masks'], case['body'][None], couch[None]], 0)
    ss = np.zeros(masks.shape[1:], np.uint32)
    for i, mask in enumerate(masks):
        ss |= mask.astype(np.uint32) << np.uint32(i)
    write_mha(f'{work}/ss.mha', ss, origin, (sx, sy, sz), 'MET_UINT')
    with open(f'{work}/ss.txt', 'w') as f:
        for i, name in enumerate(names):
            f.write(f'{i}|255 0 0|{name}\n')
    dose = case['dose'].astype(np.float32)
    reference = None
    if coarse_dose:
        # A dose grid as a TPS computes it: coarser, offset by a fraction of a voxel, not covering the whole body.
        dspacing = (sx * 1.5, sy * 1.25, sz * 1.5)
        dorigin = (origin[0] + 0.3 * sx + 6 * sx, origin[1] + 0.4 * sy + 2 * sy, origin[2] + 0.7 * sz + 2 * sz)
        dshape = (int((Z - 5) * sz / dspacing[2]), int((Y - 5) * sy / dspacing[1]), int((X - 13) * sx / dspacing[0]))
        kk, jj, ii = np.meshgrid(*[np.arange(n) for n in dshape], indexing='ij')
        coords = [(dorigin[2] + kk * dspacing[2] - origin[2]) / sz, (dorigin[1] + jj * dspacing[1] - origin[1]) / sy,
                  (dorigin[0] + ii * dspacing[0] - origin[0]) / sx]
        coarse = map_coordinates(dose, coords, order=1, mode='nearest').astype(np.float32)
        write_mha(f'{work}/dose.mha', coarse, dorigin, dspacing, 'MET_FLOAT')
        axes = [dorigin[2] + np.arange(dshape[0]) * dspacing[2], dorigin[1] + np.arange(dshape[1]) * dspacing[1],
                dorigin[0] + np.arange(dshape[2]) * dspacing[0]]
        # The reference reads the dose back from the RTDOSE that plastimatch writes (its 32-bit quantisation).
        reference = (axes, (Z, Y, X), origin, (sz, sy, sx))
    else:
        write_mha(f'{work}/dose.mha', dose, origin, (sx, sy, sz), 'MET_FLOAT')
    run('plastimatch', 'convert', '--input', f'{work}/ct.mha', '--input-ss-img', f'{work}/ss.mha', '--input-ss-list', f'{work}/ss.txt',
        '--input-dose-img', f'{work}/dose.mha', '--output-dicom', out_dir, '--patient-id', patient_id,
        '--patient-name', f'Test^{patient_id}')
    if reference:
        axes, shape, origin, spacing = reference
        rtdose = pydicom.dcmread(glob.glob(f'{out_dir}/dose_*.dcm')[0])
        stored = rtdose.pixel_array.astype(np.float64) * float(rtdose.DoseGridScaling)
        interpolate = RegularGridInterpolator(axes, stored, method='linear', bounds_error=False, fill_value=np.nan)
        kk, jj, ii = np.meshgrid(*[np.arange(n) for n in shape], indexing='ij')
        points = np.stack([origin[2] + kk * spacing[0], origin[1] + jj * spacing[1], origin[0] + ii * spacing[2]], -1)
        return interpolate(points.reshape(-1, 3)).reshape(shape).astype(np.float32)
    return None


def ds_values(values):
    """Decimal strings of at most 16 characters (DS), 10 significant digits."""
    return [f'{float(v):.10g}' for v in values]


def files_of(folder, prefix):
    return sorted(glob.glob(f'{folder}/{prefix}*.dcm'))


def add_plan(folder, prescriptions, fractions):
    """An RTPLAN naming the structure set, with target prescriptions; the RTDOSE is pointed at it."""
    rtss = pydicom.dcmread(files_of(folder, 'rtss')[0])
    dose_path = files_of(folder, 'dose')[0]
    rtdose = pydicom.dcmread(dose_path)
    numbers = {roi.ROIName: int(roi.ROINumber) for roi in rtss.StructureSetROISequence}
    plan = Dataset()
    plan.file_meta = pydicom.dataset.FileMetaDataset()
    plan.file_meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.481.5'
    plan.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    plan.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    for keyword in ('PatientName', 'PatientID', 'StudyInstanceUID', 'StudyDate', 'StudyTime', 'FrameOfReferenceUID'):
        setattr(plan, keyword, getattr(rtdose, keyword))
    plan.SOPClassUID = plan.file_meta.MediaStorageSOPClassUID
    plan.SOPInstanceUID = plan.file_meta.MediaStorageSOPInstanceUID
    plan.SeriesInstanceUID = generate_uid()
    plan.Modality = 'RTPLAN'
    plan.RTPlanLabel = 'ProstateSIB'
    references = []
    for i, (roi, gy) in enumerate(prescriptions.items()):
        item = Dataset()
        item.DoseReferenceNumber = i + 1
        item.DoseReferenceStructureType = 'VOLUME'
        item.DoseReferenceDescription = roi
        item.ReferencedROINumber = numbers[roi]
        item.DoseReferenceType = 'TARGET'
        item.TargetPrescriptionDose = gy
        references.append(item)
    plan.DoseReferenceSequence = Sequence(references)
    group = Dataset()
    group.FractionGroupNumber = 1
    group.NumberOfFractionsPlanned = fractions
    plan.FractionGroupSequence = Sequence([group])
    structure = Dataset()
    structure.ReferencedSOPClassUID = rtss.SOPClassUID
    structure.ReferencedSOPInstanceUID = rtss.SOPInstanceUID
    plan.ReferencedStructureSetSequence = Sequence([structure])
    plan.save_as(f'{folder}/plan.dcm', write_like_original=False)
    rtdose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = plan.SOPInstanceUID
    rtdose.save_as(dose_path)


INSTANCE_KEYWORDS = ('SOPInstanceUID', 'StudyInstanceUID', 'SeriesInstanceUID', 'FrameOfReferenceUID', 'MediaStorageSOPInstanceUID')


def relabel(src, dst, patient_id):
    """A copy of a set as another patient: every instance UID replaced consistently (references included)."""
    os.makedirs(dst, exist_ok=True)
    datasets = {path: pydicom.dcmread(path) for path in sorted(glob.glob(f'{src}/*.dcm'))}
    mapping = {}

    def collect(ds):
        for element in ds.iterall():
            if element.keyword in INSTANCE_KEYWORDS and element.value:
                mapping.setdefault(str(element.value), generate_uid())

    def apply(ds):
        for element in ds.iterall():
            if element.VR == 'UI' and isinstance(element.value, str) and element.value in mapping:
                element.value = mapping[element.value]

    for ds in datasets.values():
        collect(ds)
        collect(ds.file_meta)
    for path, ds in datasets.items():
        apply(ds)
        apply(ds.file_meta)
        ds.PatientID = patient_id
        ds.PatientName = f'Test^{patient_id}'
        ds.save_as(f'{dst}/{os.path.basename(path)}')
    return dst


def transform(folder, rotate=None, flip=None):
    """P1 as another acquisition: `flip` 'hfp' or 'ffs' flips the CT (and, for hfp, the dose) pixel arrays with
    matching orientation and positions; `rotate` (radians about the patient's z axis) turns every position,
    orientation and contour of the set (pixel arrays unchanged): the same patient on other axes."""
    for path in files_of(folder, 'image') + files_of(folder, 'dose'):
        ds = pydicom.dcmread(path)
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        rows, columns = int(ds.Rows), int(ds.Columns)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        pixels = ds.pixel_array
        if flip == 'hfp':
            ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]
            position = position + [(columns - 1) * dx, (rows - 1) * dy, 0]
            pixels = pixels[..., ::-1, ::-1]
            ds.PatientPosition = 'HFP'
        elif flip == 'ffs' and ds.Modality == 'CT':
            ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]
            position = position + [(columns - 1) * dx, 0, 0]
            pixels = pixels[..., :, ::-1]
            ds.PatientPosition = 'FFS'
        if rotate is not None:
            c, s = np.cos(rotate), np.sin(rotate)
            matrix = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            ds.ImageOrientationPatient = ds_values(np.concatenate([matrix @ iop[:3], matrix @ iop[3:]]))
            position = matrix @ position
        ds.ImagePositionPatient = ds_values(position)
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds.save_as(path)
    if rotate is not None:
        rtss_path = files_of(folder, 'rtss')[0]
        rtss = pydicom.dcmread(rtss_path)
        c, s = np.cos(rotate), np.sin(rotate)
        matrix = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        for roi in rtss.ROIContourSequence:
            for contour in getattr(roi, 'ContourSequence', []):
                points = np.array([float(v) for v in contour.ContourData]).reshape(-1, 3) @ matrix.T
                contour.ContourData = ds_values(points.reshape(-1))
        rtss.save_as(rtss_path)


def dvh_reference(folder):
    """dicompyler-core's DVH of every ROI, on the dose grid (the CT's, for P1)."""
    from dicompylercore import dvhcalc
    rtss = pydicom.dcmread(files_of(folder, 'rtss')[0])
    rtdose = pydicom.dcmread(files_of(folder, 'dose')[0])
    out = {}
    for roi in rtss.StructureSetROISequence:
        dvh = dvhcalc.get_dvh(rtss, rtdose, int(roi.ROINumber))
        if dvh.volume > 0:
            out[roi.ROIName] = {'mean_gy': float(dvh.mean), 'max_gy': float(dvh.max), 'volume_cc': float(dvh.volume), 'd95_gy': float(dvh.D95.value)}
    return out


def variants(src, out):
    made = {}
    for name, flags in (('implicit', ['+ti']), ('big', ['+tb']), ('deflated', ['+td']), ('bare', ['-F', '+ti'])):
        folder = f'{out}/{name}'
        os.makedirs(folder)
        for path in sorted(glob.glob(f'{src}/*.dcm')):
            run('dcmconv', *flags, path, f'{folder}/{os.path.basename(path)}')
        made[name] = folder
    return made


def bad_inputs(p1, out):
    """One patient per defect (each named by its patient id), one good patient, and files that are not DICOM."""
    os.makedirs(out)
    made = {}

    def patient(name):
        made[name] = relabel(p1, f'{out}/{name}', name)
        return made[name]

    patient('P_GOOD')
    folder = patient('P_MISSING')
    os.remove(files_of(folder, 'image')[10])
    folder = patient('P_DUPLICATE')
    ds = pydicom.dcmread(files_of(folder, 'image')[10])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(f'{folder}/image_duplicate.dcm')
    folder = patient('P_MIXED')
    ds = pydicom.dcmread(files_of(folder, 'image')[5])
    ds.PixelSpacing = ds_values([float(ds.PixelSpacing[0]) * 2, float(ds.PixelSpacing[1]) * 2])
    ds.save_as(files_of(folder, 'image')[5])
    folder = patient('P_TILT')
    for k, path in enumerate(files_of(folder, 'image')):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = ds_values([ds.ImagePositionPatient[0], float(ds.ImagePositionPatient[1]) + 0.5 * k, ds.ImagePositionPatient[2]])
        ds.save_as(path)
    folder = patient('P_JPEG')
    for path in files_of(folder, 'image'):
        run('dcmcjpeg', path, path)
    folder = patient('P_STUDY')
    rtss_path = files_of(folder, 'rtss')[0]
    rtss = pydicom.dcmread(rtss_path)
    rtss.StudyInstanceUID = generate_uid()
    other_series = generate_uid()
    for frame in rtss.ReferencedFrameOfReferenceSequence:
        for study in frame.RTReferencedStudySequence:
            study.ReferencedSOPInstanceUID = rtss.StudyInstanceUID
            for series in study.RTReferencedSeriesSequence:
                series.SeriesInstanceUID = other_series
    rtss.save_as(rtss_path)
    folder = patient('P_DOSE_ONLY')
    for path in files_of(folder, 'image') + files_of(folder, 'rtss'):
        os.remove(path)
    folder = patient('P_RELATIVE')
    dose_path = files_of(folder, 'dose')[0]
    ds = pydicom.dcmread(dose_path)
    ds.DoseUnits = 'RELATIVE'
    ds.save_as(dose_path)
    folder = patient('P_ROIS')
    rtss_path = files_of(folder, 'rtss')[0]
    rtss = pydicom.dcmread(rtss_path)
    empty = Dataset()
    empty.ROINumber = 99
    empty.ReferencedFrameOfReferenceUID = rtss.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    empty.ROIName = 'Marker_Empty'
    empty.ROIGenerationAlgorithm = 'MANUAL'
    rtss.StructureSetROISequence.append(empty)
    contours = Dataset()
    contours.ReferencedROINumber = 99
    contours.ROIDisplayColor = [0, 255, 0]
    rtss.ROIContourSequence.append(contours)
    rectum = next(roi.ROINumber for roi in rtss.StructureSetROISequence if roi.ROIName == 'RECTUM')
    sequence = next(c for c in rtss.ROIContourSequence if c.ReferencedROINumber == rectum).ContourSequence
    two = copy.deepcopy(sequence[0])
    two.ContourData = list(two.ContourData)[:6]
    two.NumberOfContourPoints = 2
    sequence.append(two)
    # A contour far beyond the last CT slice, and one 1 mm off a slice that already has its contour (not used).
    beyond = copy.deepcopy(sequence[0])
    beyond.ContourData = ds_values([v + 1000 if i % 3 == 2 else v for i, v in enumerate(beyond.ContourData)])
    sequence.append(beyond)
    shifted = copy.deepcopy(sequence[0])
    shifted.ContourData = ds_values([v + 1 if i % 3 == 2 else v for i, v in enumerate(shifted.ContourData)])
    sequence.append(shifted)
    # A copy of the bladder drawn in another frame of reference (a registered MR, say).
    bladder = next(roi for roi in rtss.StructureSetROISequence if roi.ROIName == 'Bladder')
    other = copy.deepcopy(bladder)
    other.ROINumber = 98
    other.ROIName = 'Bladder_MR'
    other.ReferencedFrameOfReferenceUID = generate_uid()
    rtss.StructureSetROISequence.append(other)
    other_contours = copy.deepcopy(next(c for c in rtss.ROIContourSequence if c.ReferencedROINumber == bladder.ROINumber))
    other_contours.ReferencedROINumber = 98
    rtss.ROIContourSequence.append(other_contours)
    rtss.save_as(rtss_path)
    with open(f'{out}/notes.dcm', 'w') as f:
        f.write('not a DICOM file\n')
    return made


def main():
    out = sys.argv[1]
    cases = sys.argv[2:]
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(f'{out}/ref')
    sets = {}
    for n, case in enumerate(cases, start=1):
        patient_id = f'P{n}'
        reference = make_set(case, f'{out}/work/{patient_id}', f'{out}/set/{patient_id}', patient_id, coarse_dose=(n == 2))
        sets[patient_id] = f'{out}/set/{patient_id}'
        if reference is not None:
            np.save(f'{out}/ref/{patient_id}_dose_on_ct.npy', reference)
    p1 = sets['P1']
    add_plan(p1, {'PTV_70': 72.0, 'PTV56': 57.6}, 32)

    # plastimatch's own rasterisation of P1's structure set, on the CT grid.
    run('plastimatch', 'convert', '--input', files_of(p1, 'rtss')[0], '--referenced-ct', p1, '--output-prefix', f'{out}/work/p1_masks', '--prefix-format', 'mha')
    masks = {os.path.basename(path)[:-4]: read_mha(path) for path in sorted(glob.glob(f'{out}/work/p1_masks/*.mha'))}
    np.savez_compressed(f'{out}/ref/P1_masks.npz', **masks)
    dvhs = {'P1': dvh_reference(p1)}

    orient = {}
    for name, kwargs in (('hfp', {'flip': 'hfp'}), ('ffs', {'flip': 'ffs'}), ('oblique', {'rotate': np.deg2rad(30)})):
        folder = f'{out}/orient/{name}'
        shutil.copytree(p1, folder)
        transform(folder, **kwargs)
        orient[name] = folder
    # The plan's dose as two BEAM doses of half each, naming the plan: added up on import.
    beams = relabel(p1, f'{out}/beams/P_BEAMS', 'P_BEAMS')
    dose_path = files_of(beams, 'dose')[0]
    ds = pydicom.dcmread(dose_path)
    ds.DoseSummationType = 'BEAM'
    ds.DoseGridScaling = ds_values([float(ds.DoseGridScaling) / 2])[0]
    for n in (1, 2):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(f'{beams}/dose_beam{n}.dcm')
    os.remove(dose_path)
    relative = relabel(p1, f'{out}/relative/P_REL', 'P_REL')
    dose_path = files_of(relative, 'dose')[0]
    ds = pydicom.dcmread(dose_path)
    ds.DoseUnits = 'RELATIVE'
    ds.DoseGridScaling = ds_values([float(ds.DoseGridScaling) / 70.0])[0]
    ds.save_as(dose_path)

    made = {
        'sets': sets,
        'variants': variants(p1, f'{out}/variants'),
        'orient': orient,
        'relative': f'{out}/relative',
        'beams': f'{out}/beams',
        'bad': bad_inputs(p1, f'{out}/bad'),
        'dvh': dvhs,
    }
    shutil.rmtree(f'{out}/work')
    with open(f'{out}/fixtures.json', 'w') as f:
        json.dump(made, f, indent=1)


if __name__ == '__main__':
    main()
