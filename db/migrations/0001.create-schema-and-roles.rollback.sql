-- Undo 0001. The roles finam_reader and finam_writer stay: they are cluster-wide
-- and may serve other databases. DROP SCHEMA without CASCADE refuses to run while
-- later migrations still have objects in it.
DROP SCHEMA finam;
