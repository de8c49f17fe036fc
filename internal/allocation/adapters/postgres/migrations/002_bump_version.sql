-- bump_version raises a product's version from the one it was loaded at,
-- and fails as a serialization failure when another transaction changed
-- it first: the check runs inside the pipelined writes, before COMMIT.
CREATE FUNCTION bump_version(p_sku text, p_version integer) RETURNS void AS $$
BEGIN
    UPDATE products SET version = version + 1 WHERE sku = p_sku AND version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product % changed since version %', p_sku, p_version
            USING ERRCODE = 'serialization_failure';
    END IF;
END
$$ LANGUAGE plpgsql;
