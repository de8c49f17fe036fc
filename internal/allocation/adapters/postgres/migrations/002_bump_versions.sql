-- bump_versions raises the version of each product from the one it was
-- loaded at, and fails as a serialization failure when another
-- transaction changed one first: the check runs inside the pipelined
-- writes, before COMMIT.
CREATE FUNCTION bump_versions(p_skus text[], p_versions integer[]) RETURNS void AS $$
DECLARE
    n integer;
BEGIN
    UPDATE products AS p SET version = p.version + 1
    FROM unnest(p_skus, p_versions) AS v(sku, version)
    WHERE p.sku = v.sku AND p.version = v.version;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> cardinality(p_skus) THEN
        RAISE EXCEPTION 'of % products, % changed since they were loaded', cardinality(p_skus), cardinality(p_skus) - n
            USING ERRCODE = 'serialization_failure';
    END IF;
END
$$ LANGUAGE plpgsql;
