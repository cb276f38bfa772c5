// RFC 6962 Merkle trees: placeholder, being written.
#include "pipeline/pipeline.h"
