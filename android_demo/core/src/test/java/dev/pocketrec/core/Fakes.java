package dev.pocketrec.core;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

/** Deterministic stand-ins for a trained model, and random semantic-ID tables. */
final class Fakes {

  private Fakes() {}

  /** {@code n} distinct random semantic IDs of {@code levels} codes in [0, k). */
  static int[][] uniqueSemanticIds(Random random, int n, int levels, int k) {
    Set<List<Integer>> seen = new HashSet<>();
    int[][] table = new int[n][];
    for (int i = 0; i < n; ) {
      int[] row = new int[levels];
      List<Integer> key = new ArrayList<>();
      for (int l = 0; l < levels; l++) {
        row[l] = random.nextInt(k);
        key.add(row[l]);
      }
      if (seen.add(key)) {
        table[i++] = row;
      }
    }
    return table;
  }

  /** Logits that depend only on the chosen codes of a prefix, its level and a seed. */
  static float[] logits(long[] prefix, int level, int k, long seed) {
    long h = seed * 0x9E3779B97F4A7C15L + level;
    for (int j = 0; j < level; j++) {
      h = h * 31 + prefix[j];
    }
    Random random = new Random(h);
    float[] out = new float[k];
    for (int c = 0; c < k; c++) {
      out[c] = (float) (3 * random.nextGaussian());
    }
    return out;
  }

  /** A beam-search step backed by {@link #logits}. */
  static BeamSearch.Step step(int k, long seed) {
    return (prefix, level) -> {
      float[][] out = new float[prefix.length][];
      for (int m = 0; m < prefix.length; m++) {
        out[m] = logits(prefix[m], level, k, seed);
      }
      return out;
    };
  }

  /**
   * A model runner whose encoder returns the history rows as memory and whose decoder returns
   * {@link #logits} seeded by the memory, so results depend on the history as a model's would.
   * It records the rows and prefixes of every call.
   */
  static final class Model implements ModelRunner {
    final int k;
    final List<Integer> encoderRows = new ArrayList<>();
    final List<Integer> decoderUsers = new ArrayList<>();
    final List<Integer> decoderRows = new ArrayList<>(); // beams per user of each call
    final List<long[][]> decoderPrefixes = new ArrayList<>();

    Model(int k) {
      this.k = k;
    }

    @Override
    public float[][][] encode(long[][][] historyCodes, long[][] historyRows) {
      encoderRows.add(historyRows.length);
      float[][][] memory = new float[historyRows.length][historyRows[0].length][1];
      for (int b = 0; b < memory.length; b++) {
        for (int j = 0; j < memory[b].length; j++) {
          memory[b][j][0] = historyRows[b][j];
        }
      }
      return memory;
    }

    @Override
    public float[][][] decode(
        float[][][] memory, boolean[][] memoryMask, long[][][] prefix, long level) {
      decoderUsers.add(prefix.length);
      decoderRows.add(prefix[0].length);
      decoderPrefixes.add(prefix[0]);
      float[][][] out = new float[prefix.length][prefix[0].length][];
      for (int b = 0; b < prefix.length; b++) {
        long seed = 17;
        for (int j = 0; j < memory[b].length; j++) {
          seed = seed * 1_000_003 + (memoryMask[b][j] ? (long) memory[b][j][0] : -1);
        }
        for (int w = 0; w < prefix[b].length; w++) {
          out[b][w] = logits(prefix[b][w], (int) level, k, seed);
        }
      }
      return out;
    }
  }
}
