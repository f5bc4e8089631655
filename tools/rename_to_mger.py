"""Mechanical rename: top-level packages pipeline/alignment/features/models -> mger.<pkg>.

Usage: python rename.py REPO [OLD=NEW ...]
With no OLD=NEW pairs it applies the namespace rename (X -> mger.X for the four packages).
With pairs (dotted module names, e.g. mger.pipeline.config=mger.core.config) it rewrites those.
"""
import re, sys
from pathlib import Path

repo = Path(sys.argv[1])
pairs = [a.split("=", 1) for a in sys.argv[2:]]
PKGS = ("pipeline", "alignment", "features", "models")
files = [p for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts and ".venv" not in p.parts
         and (p.suffix in {".py", ".md", ".cfg", ".toml"} or p.name in {"dvc.yaml", "Makefile"})]
# real modules, for bare dotted references (docs, strings); features.text clashes with the params key
modules = sorted({".".join(p.relative_to(repo).with_suffix("").parts) for pkg in PKGS
                  for p in (repo / pkg).glob("*.py") if p.name != "__init__.py"} - {"features.text"}, key=len, reverse=True)

def namespace(text: str) -> str:
    text = re.sub(r"\bfrom pipeline import __version__", "from mger import __version__", text)
    pk = "|".join(PKGS)
    # import statements (module- or function-level, also inside code strings)
    text = re.sub(rf"(?m)(^|[\s;\"'(])(from|import)\s+({pk})(?=[\s.])", r"\1\2 mger.\3", text)
    text = re.sub(rf"-m ({pk})\.", r"-m mger.\1.", text)
    text = re.sub(rf"\"-m\", \"({pk})\.", r'"-m", "mger.\1.', text)
    mods = "|".join(re.escape(m) for m in modules)
    text = re.sub(rf"(?<![\w./-])({mods})\b(?!/|\.py)", r"mger.\1", text)
    return text

def move(text: str) -> str:
    for old, new in pairs:
        text = re.sub(rf"(?<![\w.]){re.escape(old)}\b", new, text)
    return text

for f in files:
    t = f.read_text()
    n = move(t) if pairs else namespace(t)
    if n != t:
        f.write_text(n)
        print("rewrote", f.relative_to(repo))
