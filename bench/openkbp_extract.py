"""Writes the files of a fetched ababier/open-kbp snapshot (a bare git directory) into a folder outside the
repository: the challenge's code (provided_code/, main.py) and its data (provided-data/). Blobs absent from the
snapshot (some large ct.csv and dose.csv files) are skipped and listed in OUT_DIR/MISSING_FILES.txt, so that the
incomplete patients are known. Files already there with the right size are left alone.

Usage: /usr/bin/python3 bench/openkbp_extract.py GIT_DIR OUT_DIR
"""
import os
import subprocess
import sys

if len(sys.argv) != 3:
    sys.exit(__doc__.strip().splitlines()[-1])
git_dir, out = sys.argv[1], sys.argv[2]
tree = subprocess.run(["git", "--git-dir", git_dir, "ls-tree", "-r", "HEAD"], check=True, capture_output=True, text=True).stdout
entries = []
for line in tree.splitlines():
    meta, path = line.split("\t", 1)
    _, kind, sha = meta.split()
    if kind == "blob":
        entries.append((sha, path))
batch = subprocess.Popen(["git", "--git-dir", git_dir, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
missing, written = [], 0
for sha, path in entries:
    batch.stdin.write(f"{sha}\n".encode())
    batch.stdin.flush()
    header = batch.stdout.readline().decode().split()
    if header[-1] == "missing":
        missing.append(path)
        continue
    data = batch.stdout.read(int(header[2]))
    batch.stdout.read(1)  # the newline after each object
    target = os.path.join(out, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not (os.path.exists(target) and os.path.getsize(target) == len(data)):
        with open(target + ".part", "wb") as f:
            f.write(data)
        os.replace(target + ".part", target)
    written += 1
batch.stdin.close()
batch.wait()
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "MISSING_FILES.txt"), "w") as f:
    f.write("".join(p + "\n" for p in missing))
print(f"{written} files in {out}; {len(missing)} absent from the snapshot (listed in {out}/MISSING_FILES.txt)")
