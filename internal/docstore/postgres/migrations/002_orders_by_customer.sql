-- The orders service finds its orders by customer (GET /orders?customer=):
-- orders kept by earlier versions were indexed by status, which nothing
-- looked up.
UPDATE documents SET idx = coalesce(body->>'customer', '') WHERE kind = 'order';
