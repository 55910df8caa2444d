def test_schema_version(db):
    assert db.execute("SELECT finam.schema_version()").fetchone()[0] == "1.0.0"
