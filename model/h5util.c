/* h5util.c - see h5util.h. */
#include "model/h5util.h"

#include <stdlib.h>
#include <string.h>

int pai_h5_write_attr(hid_t loc, const char *path, const char *name, hid_t ftype, hid_t mtype,
                      const void *v, int n, int scalar) {
  int rc = 0;
  hid_t space = -1, a = -1;
  hsize_t dim = (hsize_t)n;
  H5_CHECK(space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL), "%s", path);
  H5_CHECK(a = H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT),
           "%s: cannot create attribute '%s'", path, name);
  H5_CHECK(H5Awrite(a, mtype, v), "%s: cannot write attribute '%s'", path, name);
fail:
  if (a >= 0) H5Aclose(a);
  if (space >= 0) H5Sclose(space);
  return rc;
}

int pai_h5_write_i64(hid_t loc, const char *path, const char *name, const int64_t *v, int n,
                     int scalar) {
  return pai_h5_write_attr(loc, path, name, H5T_STD_I64LE, H5T_NATIVE_INT64, v, n, scalar);
}

int pai_h5_write_strs(hid_t loc, const char *path, const char *name, const char *const *s,
                      int n, int scalar) {
  int rc = 0;
  hid_t type = -1;
  H5_CHECK(type = H5Tcopy(H5T_C_S1), "%s", path);
  H5_CHECK(H5Tset_size(type, H5T_VARIABLE), "%s", path);
  H5_CHECK(H5Tset_cset(type, H5T_CSET_UTF8), "%s", path);
  rc = pai_h5_write_attr(loc, path, name, type, type, s, n, scalar);
fail:
  if (type >= 0) H5Tclose(type);
  return rc;
}

int pai_h5_read_str(hid_t loc, const char *name, char *out, size_t out_len) {
  int rc = PAI_ERR_INPUT;
  hid_t a = -1, type = -1, mem = -1, space = -1;
  out[0] = 0;
  if (H5Aexists(loc, name) <= 0) return PAI_ERR_INPUT;
  if ((a = H5Aopen(loc, name, H5P_DEFAULT)) < 0) goto done;
  if ((type = H5Aget_type(a)) < 0 || H5Tget_class(type) != H5T_STRING) goto done;
  if ((space = H5Aget_space(a)) < 0 || H5Sget_simple_extent_npoints(space) != 1) goto done;
  if ((mem = H5Tcopy(H5T_C_S1)) < 0) goto done;
  H5Tset_cset(mem, H5Tget_cset(type));
  if (H5Tis_variable_str(type) > 0) {
    char *v = NULL;
    H5Tset_size(mem, H5T_VARIABLE);
    if (H5Aread(a, mem, &v) < 0) goto done;
    snprintf(out, out_len, "%s", v ? v : "");
    H5free_memory(v);
  } else {
    size_t len = H5Tget_size(type);
    char *buf = calloc(1, len + 1);
    if (!buf) goto done;
    H5Tset_size(mem, len + 1);
    if (H5Aread(a, mem, buf) >= 0) snprintf(out, out_len, "%s", buf);
    free(buf);
  }
  rc = 0;
done:
  if (mem >= 0) H5Tclose(mem);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (a >= 0) H5Aclose(a);
  return rc;
}

hid_t pai_h5_f16_type(void) {
  /* h5py's recipe: binary32 with the fields of binary16 (sign bit 15, exponent bits 10..14,
   * mantissa bits 0..9), size 2 bytes, exponent bias 15. */
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  if (t < 0) return t;
  if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

int pai_h5_read_i64(hid_t loc, const char *path, const char *name, int64_t *v, const char *what) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  herr_t r = a >= 0 ? H5Aread(a, H5T_NATIVE_INT64, v) : -1;
  if (a >= 0) H5Aclose(a);
  if (r < 0) {
    PAI_ERR("%s: missing or unreadable attribute %s (not %s?)", path, name, what);
    return PAI_ERR_INPUT;
  }
  return 0;
}
