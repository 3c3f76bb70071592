-- The admin-action rate limit counts one operator's recent actions; a notice's page lists the blocks of that notice.
CREATE INDEX audit_log_username_at ON audit_log (username, at);
CREATE INDEX audit_log_action_target ON audit_log (action, target, at DESC);
