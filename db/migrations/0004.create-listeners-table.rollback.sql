DROP TABLE finam.listeners;
