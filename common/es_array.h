/* es_array.h - the number of elements of a true array (not a pointer). */
#ifndef ES_ARRAY_H
#define ES_ARRAY_H

#define ARRAY_SIZE(a) (sizeof(a) / sizeof(*(a)))

#endif
