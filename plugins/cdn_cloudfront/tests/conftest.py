"""--import-mode=importlib does not put test directories on sys.path; the helper module lives here."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
