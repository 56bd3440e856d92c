"""The data stage: the native raw schema (``schema``), validation with quarantine (``ingest``), importers of
public datasets (``importers``), reward-model pairs (``pairs``) and the data report (``report``)."""
