-- The orders service finds its orders by customer (GET /orders?customer=):
-- orders kept by earlier versions were indexed by status, which nothing
-- looked up.
UPDATE documents SET idx = coalesce(json_extract(body, '$.customer'), '') WHERE kind = 'order';
