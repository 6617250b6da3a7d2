-- A2A tasks (issue 11): the text of each run's message and final answer, so a new task in
-- a context sees the context's earlier turns without waking every earlier run's object
-- (written by the run object with its D1 summary; NULL for runs made before this), and an
-- index for ListTasks (an agent's tasks, most recently updated first).
ALTER TABLE `runs` ADD `input_text` text;--> statement-breakpoint
ALTER TABLE `runs` ADD `output_text` text;--> statement-breakpoint
CREATE INDEX `runs_org_agent_updated` ON `runs` (`org_id`,`repository_id`,`agent_name`,`updated_at`);
