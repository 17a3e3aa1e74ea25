"""Data files the gateway ships: the console's map areas (kelurahan centres, police posts)."""
from pathlib import Path

DATA = Path(__file__).parent
KLOJEN_AREAS = DATA / "klojen_areas.json"
