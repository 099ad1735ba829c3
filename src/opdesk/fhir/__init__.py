"""FHIR R4 (R4B models) output of OPDesk records, to the NRCeS profiles for ABDM."""
