-- 0002_activity_due: when activity.due was sent for an activity's due
-- time. The scan (due.c) takes open activities whose due time passed and
-- that were not announced yet; moving due_at clears the mark, so a
-- rescheduled activity is announced again when its new time comes.

ALTER TABLE crm.activities ADD COLUMN due_notified_at timestamptz;
CREATE INDEX activities_due_pending_idx ON crm.activities (tenant_id, due_at)
	WHERE deleted_at IS NULL AND completed_at IS NULL
	AND due_notified_at IS NULL;
