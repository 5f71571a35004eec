"""treesynth.analytics: diversity metrics and coverage reports (see the analytics issue; not built yet)."""
