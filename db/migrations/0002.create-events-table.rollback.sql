DROP TABLE finam.events;
