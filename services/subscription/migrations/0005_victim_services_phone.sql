-- The agency's victim-services line from agency.profile.v1: the number the hotline's 0 connects a caller to.
ALTER TABLE agencies ADD COLUMN victim_services_phone text;
