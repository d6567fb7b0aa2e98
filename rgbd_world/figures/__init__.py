"""The pictures: the demo's overview, 3D lifting and its new views, the README's lifting figure, contact sheets."""
