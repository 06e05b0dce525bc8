"""Print pyproject.toml's build, runtime and test requirements one a line, markers kept, for
one edge of their ranges: `newest` without version ranges (pip picks each one's newest release),
`oldest` with each build and runtime range at its lower bound (`>=X` becomes `==X`; the test
tools keep their ranges)."""

import re
import sys
import tomllib
from pathlib import Path

edge = sys.argv[1]
pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
shipped = pyproject["build-system"]["requires"] + pyproject["project"]["dependencies"]
for requirement in shipped + pyproject["project"]["optional-dependencies"]["test"]:
    spec, _, marker = requirement.partition(";")
    name = re.match(r"\s*([A-Za-z0-9._-]+)", spec).group(1)
    lower = re.search(r">=\s*([0-9][^,\s]*)", spec)
    if edge == "newest":
        spec = name
    elif lower and requirement in shipped:
        spec = f"{name}=={lower.group(1)}"
    print(f"{spec.strip()}; {marker.strip()}" if marker else spec.strip())
