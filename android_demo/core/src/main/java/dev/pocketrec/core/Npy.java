package dev.pocketrec.core;

import java.io.BufferedInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads numpy {@code .npy} files (format versions 1 and 2) holding little-endian bool, int32,
 * int64, float32 or float64 arrays in C order: what {@code np.save} writes for the bundle's
 * semantic-ID table.
 */
public final class Npy {

  private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
  private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
  private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
  private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

  private Npy() {}

  /** Reads the array in {@code file}. */
  public static NdArray read(Path file) throws IOException {
    try (InputStream in = Files.newInputStream(file)) {
      return read(in);
    }
  }

  /**
   * Reads one array from {@code in} (the stream is not closed).
   *
   * @throws IOException if the stream ends early or does not hold a supported {@code .npy} array.
   */
  public static NdArray read(InputStream in) throws IOException {
    DataInputStream data = new DataInputStream(new BufferedInputStream(in));
    byte[] magic = new byte[MAGIC.length];
    data.readFully(magic);
    for (int i = 0; i < MAGIC.length; i++) {
      if (magic[i] != MAGIC[i]) {
        throw new IOException("not a .npy file (bad magic string)");
      }
    }
    int major = data.readUnsignedByte();
    data.readUnsignedByte(); // minor version: no format differences
    long headerLength;
    if (major == 1) {
      headerLength = Short.toUnsignedInt(Short.reverseBytes(data.readShort()));
    } else if (major == 2) {
      headerLength = Integer.toUnsignedLong(Integer.reverseBytes(data.readInt()));
    } else {
      throw new IOException(
          ".npy format version " + major + " is not supported (versions 1 and 2 are); save the "
              + "array with numpy's default format");
    }
    byte[] header = new byte[Math.toIntExact(headerLength)];
    data.readFully(header);
    String text = new String(header, StandardCharsets.ISO_8859_1);
    NdArray.DType dtype = dtype(field(DESCR, text, "descr"));
    if (field(FORTRAN, text, "fortran_order").equals("True")) {
      throw new IOException(
          "Fortran-ordered .npy arrays are not supported; save np.ascontiguousarray(table)");
    }
    int[] shape = shape(field(SHAPE, text, "shape"));
    long count = 1;
    for (int dim : shape) {
      count *= dim;
    }
    byte[] body = new byte[Math.toIntExact(count * dtype.itemSize())];
    data.readFully(body);
    return NdArray.of(dtype, shape, body);
  }

  private static String field(Pattern pattern, String header, String name) throws IOException {
    Matcher matcher = pattern.matcher(header);
    if (!matcher.find()) {
      throw new IOException(".npy header has no valid '" + name + "' entry: " + header.trim());
    }
    return matcher.group(1);
  }

  private static NdArray.DType dtype(String descr) throws IOException {
    switch (descr) {
      case "|b1":
        return NdArray.DType.BOOL;
      case "<i4":
        return NdArray.DType.INT32;
      case "<i8":
        return NdArray.DType.INT64;
      case "<f4":
        return NdArray.DType.FLOAT32;
      case "<f8":
        return NdArray.DType.FLOAT64;
      default:
        throw new IOException(
            ".npy dtype '" + descr + "' is not supported; expected little-endian bool, int32, "
                + "int64, float32 or float64");
    }
  }

  private static int[] shape(String tuple) throws IOException {
    String[] parts = tuple.split(",");
    int count = 0;
    int[] dims = new int[parts.length];
    for (String part : parts) {
      String trimmed = part.trim();
      if (trimmed.isEmpty()) {
        continue;
      }
      int dim;
      try {
        dim = Integer.parseInt(trimmed);
      } catch (NumberFormatException e) {
        throw new IOException(".npy shape (" + tuple + ") is not a tuple of integers", e);
      }
      if (dim < 0) {
        throw new IOException(".npy shape (" + tuple + ") has a negative dimension");
      }
      dims[count++] = dim;
    }
    int[] shape = new int[count];
    System.arraycopy(dims, 0, shape, 0, count);
    return shape;
  }
}
