DROP TABLE finam.checkpoints;
