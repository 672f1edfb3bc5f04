package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.Test;
import org.junit.function.ThrowingRunnable;

/** The array container and its two file forms: base64 JSON and .npy. */
public class NdArrayTest {

  @Test
  public void decodesBase64JsonArrays() {
    // np.array([[1, -2, 3], [4, 5, 2**40]], dtype=np.int64), as pocketrec._trace.encode_array.
    Map<String, Object> json =
        NdArray.of(NdArray.DType.INT64, new int[] {2, 3}, longs(1, -2, 3, 4, 5, 1L << 40))
            .toJson();
    NdArray array = NdArray.fromJson(Json.parse(Json.write(json)));
    assertArrayEquals(new int[] {2, 3}, array.shape());
    assertArrayEquals(new long[] {1, -2, 3, 4, 5, 1L << 40}, array.toLongs());
    assertArrayEquals(new double[] {1, -2, 3, 4, 5, 1L << 40}, array.toDoubles(), 0);
    assertThrows(IllegalArgumentException.class, array::toInts); // 2**40 does not fit
    assertThrows(IllegalArgumentException.class, array::toFloats);
  }

  @Test
  public void roundTripsFloatsAndBooleans() {
    NdArray floats = NdArray.ofFloats(new float[] {0.5f, -1e-30f, Float.MAX_VALUE, 3f}, 2, 2);
    NdArray back = NdArray.fromJson(floats.toJson());
    assertEquals(NdArray.DType.FLOAT32, back.dtype());
    assertArrayEquals(new float[] {0.5f, -1e-30f, Float.MAX_VALUE, 3f}, back.toFloats(), 0f);
    NdArray bools = parse("{\"dtype\": \"bool\", \"shape\": [3], \"b64\": \"AQAB\"}");
    assertArrayEquals(new boolean[] {true, false, true}, bools.toBooleans());
  }

  @Test
  public void rejectsInconsistentArrays() {
    String[] bad = {
      "{\"dtype\": \"int32\", \"shape\": [2], \"b64\": \"AQAB\"}", // 3 bytes for 8
      "{\"dtype\": \"uint8\", \"shape\": [1], \"b64\": \"AQ==\"}", // a dtype pocketrec never uses
      "{\"shape\": []}"
    };
    for (String json : bad) {
      assertThrows(json, IllegalArgumentException.class, () -> parse(json));
    }
  }

  @Test
  public void readsNpyVersion1And2OfEveryDtype() throws IOException {
    assertArrayEquals(new int[] {7, -1, 0, 2}, npy(1, "<i4", "(2, 2)", ints(7, -1, 0, 2)).toInts());
    NdArray int64 = npy(2, "<i8", "(2,)", longs(1L << 50, -3));
    assertArrayEquals(new long[] {1L << 50, -3}, int64.toLongs());
    NdArray float32 = npy(1, "<f4", "(2,)", floats(1.5f, -2f));
    assertArrayEquals(new float[] {1.5f, -2f}, float32.toFloats(), 0);
    NdArray doubles = npy(2, "<f8", "(1, 2)", doubles(Math.PI, 1e300));
    assertArrayEquals(new int[] {1, 2}, doubles.shape());
    assertArrayEquals(new double[] {Math.PI, 1e300}, doubles.toDoubles(), 0);
    assertArrayEquals(
        new boolean[] {true, false}, npy(1, "|b1", "(2,)", new byte[] {1, 0}).toBooleans());
    NdArray scalar = npy(1, "<i4", "()", ints(5));
    assertArrayEquals(new int[0], scalar.shape());
    assertArrayEquals(new int[] {5}, scalar.toInts());
  }

  @Test
  public void readsTheTinyBundleTable() throws IOException {
    NdArray table = Npy.read(TestResources.tinyBundle().resolve("semantic_ids.npy"));
    assertEquals(NdArray.DType.INT32, table.dtype());
    assertArrayEquals(new int[] {40, 3}, table.shape());
    int[][] rows = table.toIntMatrix();
    assertArrayEquals(new int[] {0, 0, 0}, rows[0]); // item0: 0 % 8, (0 / 3) % 8, collision 0
    assertArrayEquals(new int[] {7, 2, 0}, rows[1]); // item7: 7 % 8, (7 / 3) % 8, collision 0
  }

  @Test
  public void rejectsUnsupportedNpyFiles() {
    assertNpyError("'>i4' is not supported", () -> npy(1, ">i4", "(1,)", ints(1)));
    String fortran = "{'descr': '<i4', 'fortran_order': True, 'shape': (1,), }";
    assertNpyError("Fortran-ordered", () -> npyWithHeader(1, fortran, ints(1)));
    assertNpyError("version 3 is not supported", () -> npy(3, "<i4", "(1,)", ints(1)));
    byte[] notNpy = "NUMPY!!!".getBytes(StandardCharsets.US_ASCII);
    assertNpyError("bad magic", () -> Npy.read(new ByteArrayInputStream(notNpy)));
    assertThrows(IOException.class, () -> npy(1, "<i4", "(3,)", ints(1))); // body too short
  }

  private static NdArray parse(String json) {
    return NdArray.fromJson(Json.parse(json));
  }

  private static void assertNpyError(String fragment, ThrowingRunnable read) {
    IOException e = assertThrows(IOException.class, read);
    assertTrue(e.getMessage(), e.getMessage().contains(fragment));
  }

  private static NdArray npy(int version, String descr, String shape, byte[] body)
      throws IOException {
    String header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    return npyWithHeader(version, header, body);
  }

  /** A .npy file as np.save writes it: magic, version, header padded to 64 bytes, body. */
  private static NdArray npyWithHeader(int version, String dict, byte[] body) throws IOException {
    int prefix = 6 + 2 + (version == 1 ? 2 : 4);
    StringBuilder header = new StringBuilder(dict);
    while ((prefix + header.length() + 1) % 64 != 0) {
      header.append(' ');
    }
    header.append('\n');
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(new byte[] {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y', (byte) version, 0});
    ByteBuffer length = ByteBuffer.allocate(version == 1 ? 2 : 4).order(ByteOrder.LITTLE_ENDIAN);
    if (version == 1) {
      length.putShort((short) header.length());
    } else {
      length.putInt(header.length());
    }
    out.write(length.array());
    out.write(header.toString().getBytes(StandardCharsets.ISO_8859_1));
    out.write(body);
    return Npy.read(new ByteArrayInputStream(out.toByteArray()));
  }

  private static ByteBuffer buffer(int bytes) {
    return ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
  }

  private static byte[] ints(int... values) {
    ByteBuffer b = buffer(4 * values.length);
    b.asIntBuffer().put(values);
    return b.array();
  }

  private static byte[] longs(long... values) {
    ByteBuffer b = buffer(8 * values.length);
    b.asLongBuffer().put(values);
    return b.array();
  }

  private static byte[] floats(float... values) {
    ByteBuffer b = buffer(4 * values.length);
    b.asFloatBuffer().put(values);
    return b.array();
  }

  private static byte[] doubles(double... values) {
    ByteBuffer b = buffer(8 * values.length);
    b.asDoubleBuffer().put(values);
    return b.array();
  }
}
