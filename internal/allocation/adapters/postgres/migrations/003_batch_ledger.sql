-- What a batch's quantity includes, for the warehouse's reports: the goods
-- dispatched from it (a stock count says how much of it it saw leave), and
-- the number of the last warehouse report applied.
ALTER TABLE batches ADD COLUMN dispatched bigint NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN report_seq bigint NOT NULL DEFAULT 0;
