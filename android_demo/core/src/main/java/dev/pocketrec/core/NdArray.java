package dev.pocketrec.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A dense n-dimensional array as pocketrec files store it: an element type, a shape and the
 * elements in C order, little-endian.
 *
 * <p>It is the in-memory form of {@code .npy} tables ({@link Npy}) and of the JSON array form
 * {@code {"dtype", "shape", "b64"}} that traces and adapters use (Python's {@code
 * pocketrec._trace.encode_array}). Accessors convert to Java arrays and refuse lossy
 * conversions (floats to integers, int64 values that do not fit an int).
 */
public final class NdArray {

  /** Element types pocketrec files use, named as numpy names them. */
  public enum DType {
    BOOL("bool", 1),
    INT32("int32", 4),
    INT64("int64", 8),
    FLOAT32("float32", 4),
    FLOAT64("float64", 8);

    private final String numpyName;
    private final int itemSize;

    DType(String numpyName, int itemSize) {
      this.numpyName = numpyName;
      this.itemSize = itemSize;
    }

    /** The numpy name, such as {@code "float32"}. */
    public String numpyName() {
      return numpyName;
    }

    /** Bytes per element. */
    public int itemSize() {
      return itemSize;
    }

    /**
     * The type with this numpy name.
     *
     * @throws IllegalArgumentException for a type pocketrec files do not use.
     */
    public static DType of(String numpyName) {
      for (DType type : values()) {
        if (type.numpyName.equals(numpyName)) {
          return type;
        }
      }
      throw new IllegalArgumentException(
          "unsupported array dtype '" + numpyName + "'; expected one of bool, int32, int64, "
              + "float32, float64");
    }
  }

  private final DType dtype;
  private final int[] shape;
  private final ByteBuffer data;

  private NdArray(DType dtype, int[] shape, ByteBuffer data) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
  }

  /**
   * Wraps little-endian element bytes.
   *
   * @throws IllegalArgumentException if the byte count does not match the shape.
   */
  public static NdArray of(DType dtype, int[] shape, byte[] littleEndian) {
    long count = 1;
    for (int dim : shape) {
      if (dim < 0) {
        throw new IllegalArgumentException("negative dimension in shape " + Arrays.toString(shape));
      }
      count *= dim;
    }
    if (count * dtype.itemSize() != littleEndian.length) {
      throw new IllegalArgumentException(
          "an array of shape " + Arrays.toString(shape) + " and dtype " + dtype.numpyName()
              + " needs " + count * dtype.itemSize() + " bytes, got " + littleEndian.length);
    }
    return new NdArray(dtype, shape.clone(), ByteBuffer.wrap(littleEndian));
  }

  /** A float32 array of the given shape holding {@code values} in C order. */
  public static NdArray ofFloats(float[] values, int... shape) {
    ByteBuffer buffer = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    buffer.asFloatBuffer().put(values);
    return of(DType.FLOAT32, shape, buffer.array());
  }

  /**
   * Reads the JSON form {@code {"dtype": "float32", "shape": [2, 3], "b64": "..."}}.
   *
   * @throws IllegalArgumentException if a field is missing or inconsistent.
   */
  public static NdArray fromJson(Object json) {
    if (!(json instanceof Map)) {
      throw new IllegalArgumentException("an encoded array must be a JSON object");
    }
    Map<?, ?> map = (Map<?, ?>) json;
    Object dtype = map.get("dtype");
    Object shape = map.get("shape");
    Object b64 = map.get("b64");
    if (!(dtype instanceof String) || !(shape instanceof List) || !(b64 instanceof String)) {
      throw new IllegalArgumentException(
          "an encoded array needs \"dtype\" (string), \"shape\" (list) and \"b64\" (string)");
    }
    List<?> dims = (List<?>) shape;
    int[] parsed = new int[dims.size()];
    for (int i = 0; i < parsed.length; i++) {
      if (!(dims.get(i) instanceof Long)) {
        throw new IllegalArgumentException("array shape must hold integers, got " + dims);
      }
      parsed[i] = Math.toIntExact((Long) dims.get(i));
    }
    return of(DType.of((String) dtype), parsed, Base64.getDecoder().decode((String) b64));
  }

  /** The JSON form {@code {"dtype", "shape", "b64"}} (see {@link #fromJson}). */
  public Map<String, Object> toJson() {
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("dtype", dtype.numpyName());
    List<Object> dims = new ArrayList<>();
    for (int dim : shape) {
      dims.add((long) dim);
    }
    json.put("shape", dims);
    byte[] bytes = new byte[data.capacity()];
    data.duplicate().get(bytes);
    json.put("b64", Base64.getEncoder().encodeToString(bytes));
    return json;
  }

  public DType dtype() {
    return dtype;
  }

  public int[] shape() {
    return shape.clone();
  }

  /** Number of elements. */
  public int size() {
    return data.capacity() / dtype.itemSize();
  }

  /** Elements as longs (integer dtypes only). */
  public long[] toLongs() {
    long[] out = new long[size()];
    if (dtype == DType.INT64) {
      data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().get(out);
    } else if (dtype == DType.INT32) {
      for (int i = 0; i < out.length; i++) {
        out[i] = data.getInt(4 * i);
      }
    } else {
      throw wrongType("integers");
    }
    return out;
  }

  /** Elements as ints (integer dtypes only; every value must fit an int). */
  public int[] toInts() {
    long[] longs = toLongs();
    int[] out = new int[longs.length];
    for (int i = 0; i < out.length; i++) {
      if (longs[i] != (int) longs[i]) {
        throw new IllegalArgumentException("array value " + longs[i] + " does not fit an int");
      }
      out[i] = (int) longs[i];
    }
    return out;
  }

  /** Elements as floats (float32 only: the conversion is exact). */
  public float[] toFloats() {
    if (dtype != DType.FLOAT32) {
      throw wrongType("float32 values");
    }
    float[] out = new float[size()];
    data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(out);
    return out;
  }

  /** Elements as doubles (float and integer dtypes). */
  public double[] toDoubles() {
    double[] out = new double[size()];
    switch (dtype) {
      case FLOAT64:
        data.duplicate().order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer().get(out);
        return out;
      case FLOAT32:
        float[] floats = toFloats();
        for (int i = 0; i < out.length; i++) {
          out[i] = floats[i];
        }
        return out;
      case INT32:
      case INT64:
        long[] longs = toLongs();
        for (int i = 0; i < out.length; i++) {
          out[i] = longs[i];
        }
        return out;
      default:
        throw wrongType("numbers");
    }
  }

  /** Elements as booleans (bool only). */
  public boolean[] toBooleans() {
    if (dtype != DType.BOOL) {
      throw wrongType("booleans");
    }
    boolean[] out = new boolean[size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = data.get(i) != 0;
    }
    return out;
  }

  /** A 2-D integer array as rows (see {@link #toInts}). */
  public int[][] toIntMatrix() {
    if (shape.length != 2) {
      throw new IllegalArgumentException(
          "expected a 2-D array, got shape " + Arrays.toString(shape));
    }
    int[] flat = toInts();
    int[][] rows = new int[shape[0]][];
    for (int r = 0; r < rows.length; r++) {
      rows[r] = Arrays.copyOfRange(flat, r * shape[1], (r + 1) * shape[1]);
    }
    return rows;
  }

  private IllegalArgumentException wrongType(String wanted) {
    return new IllegalArgumentException(
        "cannot read " + dtype.numpyName() + " array elements as " + wanted);
  }
}
