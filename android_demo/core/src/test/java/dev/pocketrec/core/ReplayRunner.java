package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.lang.reflect.Array;
import java.util.Arrays;
import java.util.List;

/**
 * A {@link ModelRunner} that replays a recorded request: each call must come in the recorded
 * order with exactly the recorded inputs, and gets the recorded output back.
 *
 * <p>Every input must match exactly: integer and boolean inputs value for value, float inputs
 * (the memory, a recorded encoder output that the recommender passes back unchanged) bit for bit,
 * and the number of rows of each call too, so the core decodes exactly the beams the Python SDK
 * decoded, padded to a graph's static batch the same way.
 */
final class ReplayRunner implements ModelRunner {

  private final List<GoldenTrace.Call> calls;
  private final String where;
  private int next;

  ReplayRunner(List<GoldenTrace.Call> calls, String where) {
    this.calls = calls;
    this.where = where;
  }

  @Override
  public float[][][] encode(long[][][] historyCodes, long[][] historyRows) {
    GoldenTrace.Call call = take("encoder");
    expect(call, "history_codes", shape(historyCodes), flatten(historyCodes));
    expect(call, "history_rows", shape(historyRows), flatten(historyRows));
    int[] shape = call.output.shape();
    float[] flat = call.output.toFloats();
    float[][][] memory = new float[shape[0]][shape[1]][shape[2]];
    int i = 0;
    for (float[][] user : memory) {
      for (float[] step : user) {
        for (int d = 0; d < step.length; d++) {
          step[d] = flat[i++];
        }
      }
    }
    return memory;
  }

  @Override
  public float[][][] decode(
      float[][][] memory, boolean[][] memoryMask, long[][][] prefix, long level) {
    GoldenTrace.Call call = take("decoder");
    long[] recordedLevel = call.inputs.get("level").toLongs();
    assertEquals(where + ": level must be a single value", 1, recordedLevel.length);
    assertEquals(where + ": level", recordedLevel[0], level);
    expect(call, "prefix", shape(prefix), flatten(prefix));
    NdArray recordedMemory = call.inputs.get("memory");
    assertArrayEquals(where + ": memory shape", recordedMemory.shape(), shape(memory));
    assertArrayEquals(
        where + ": memory values", bits(recordedMemory.toFloats()), bits(flatten(memory)));
    NdArray recordedMask = call.inputs.get("memory_mask");
    assertArrayEquals(where + ": memory_mask shape", recordedMask.shape(), shape(memoryMask));
    assertArrayEquals(where + ": memory_mask", recordedMask.toBooleans(), flatten(memoryMask));
    int[] shape = call.output.shape(); // (users, beams, K)
    float[] flat = call.output.toFloats();
    float[][][] logits = new float[shape[0]][shape[1]][];
    for (int b = 0; b < shape[0]; b++) {
      for (int w = 0; w < shape[1]; w++) {
        int at = (b * shape[1] + w) * shape[2];
        logits[b][w] = Arrays.copyOfRange(flat, at, at + shape[2]);
      }
    }
    return logits;
  }

  /** Fails unless every recorded call was made. */
  void assertAllCalled() {
    assertEquals(where + ": model calls made", calls.size(), next);
  }

  private GoldenTrace.Call take(String graph) {
    assertTrue(
        where + ": more model calls than recorded (" + calls.size() + ")", next < calls.size());
    GoldenTrace.Call call = calls.get(next++);
    assertEquals(where + ": graph of call " + (next - 1), call.graph, graph);
    return call;
  }

  private void expect(GoldenTrace.Call call, String input, int[] shape, long[] values) {
    NdArray recorded = call.inputs.get(input);
    assertArrayEquals(where + ": " + input + " shape", recorded.shape(), shape);
    assertArrayEquals(where + ": " + input, recorded.toLongs(), values);
  }

  private static int[] shape(Object array) {
    int depth = 0;
    for (Class<?> c = array.getClass(); c.isArray(); c = c.getComponentType()) {
      depth++;
    }
    int[] shape = new int[depth];
    Object level = array;
    for (int d = 0; d < depth; d++) {
      shape[d] = Array.getLength(level);
      level = shape[d] > 0 ? Array.get(level, 0) : null;
      if (level == null) {
        break;
      }
    }
    return shape;
  }

  private static long[] flatten(long[][] a) {
    long[] out = new long[a.length * (a.length > 0 ? a[0].length : 0)];
    for (int i = 0; i < a.length; i++) {
      System.arraycopy(a[i], 0, out, i * a[i].length, a[i].length);
    }
    return out;
  }

  private static long[] flatten(long[][][] a) {
    int inner = a[0].length * a[0][0].length;
    long[] out = new long[a.length * inner];
    for (int i = 0; i < a.length; i++) {
      System.arraycopy(flatten(a[i]), 0, out, i * inner, inner);
    }
    return out;
  }

  private static boolean[] flatten(boolean[][] a) {
    boolean[] out = new boolean[a.length * a[0].length];
    for (int i = 0; i < a.length; i++) {
      System.arraycopy(a[i], 0, out, i * a[i].length, a[i].length);
    }
    return out;
  }

  private static float[] flatten(float[][][] a) {
    int rows = a[0].length;
    int cols = a[0][0].length;
    float[] out = new float[a.length * rows * cols];
    for (int i = 0; i < a.length; i++) {
      for (int j = 0; j < rows; j++) {
        System.arraycopy(a[i][j], 0, out, (i * rows + j) * cols, cols);
      }
    }
    return out;
  }

  private static int[] bits(float[] values) {
    int[] out = new int[values.length];
    for (int i = 0; i < values.length; i++) {
      out[i] = Float.floatToRawIntBits(values[i]);
    }
    return out;
  }
}
