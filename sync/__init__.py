"""Registry link: FHIR client, sync engine, scheduler service and the reference registry."""
