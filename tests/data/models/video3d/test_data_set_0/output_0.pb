
BlogitsJ(JÑq¿Â´™¾ü·†>&9¯>|;H¿WÞl>D³Ð=lw->¿å«¾ÌZ]¾