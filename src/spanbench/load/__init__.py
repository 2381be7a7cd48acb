"""load: the load models behind one interface (load/base.py), the phase schedule, the state they share."""
