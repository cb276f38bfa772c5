// The admin state store (LMDB).
#include "admin/admin.h"
