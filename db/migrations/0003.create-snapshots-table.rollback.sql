DROP TABLE finam.snapshots;
