package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.Random;
import java.util.stream.IntStream;
import org.junit.Test;

/** The prefix index agrees with a brute-force scan of the table on every possible prefix. */
public class PrefixIndexTest {

  @Test
  public void matchesBruteForceOnRandomTables() {
    Random random = new Random(42);
    int[][] configs = {{1, 1, 2}, {5, 2, 3}, {40, 3, 4}, {60, 3, 5}, {100, 4, 4}, {7, 2, 8}};
    for (int[] config : configs) {
      int n = config[0];
      int levels = config[1];
      int k = config[2];
      int[][] table = Fakes.uniqueSemanticIds(random, n, levels, k);
      PrefixIndex index = new PrefixIndex(table, k);
      assertEquals(levels, index.numLevels());
      assertEquals(n, index.numItems());
      for (int level = 0; level < levels; level++) {
        for (int[] prefix : allPrefixes(level, k)) {
          assertArrayEquals(
              "level " + level + " prefix " + Arrays.toString(prefix),
              bruteChildren(table, prefix, k),
              index.children(level, index.key(prefix, level)));
        }
      }
      for (int[] full : allPrefixes(levels, k)) {
        assertEquals(bruteItem(table, full), index.item(index.key(full, levels)));
      }
    }
  }

  @Test
  public void keysAreBaseKDigits() {
    PrefixIndex index = new PrefixIndex(new int[][] {{1, 2, 3}}, 10);
    assertEquals(0, index.key(new int[] {1, 2, 3}, 0));
    assertEquals(12, index.key(new int[] {1, 2, 3}, 2));
    assertEquals(123, index.key(new int[] {1, 2, 3}, 3));
    assertEquals(0, index.item(123));
    assertEquals(-1, index.item(124));
  }

  @Test
  public void unknownPrefixesHaveNoChildren() {
    PrefixIndex index = new PrefixIndex(new int[][] {{0, 1}, {2, 0}, {0, 2}}, 3);
    assertArrayEquals(new int[] {0, 2}, index.children(0, 0));
    assertArrayEquals(new int[] {1, 2}, index.children(1, 0)); // prefix [0]
    assertArrayEquals(new int[0], index.children(1, 1)); // prefix [1] does not exist
    assertArrayEquals(new int[0], index.children(1, 99));
    assertArrayEquals(new int[0], index.children(1, -1));
  }

  @Test
  public void rejectsInvalidTables() {
    assertMessage("share a semantic ID", new int[][] {{0, 1}, {1, 0}, {0, 1}}, 2);
    assertMessage("must lie in [0, 4)", new int[][] {{0, 4}}, 4);
    assertMessage("must lie in [0, 4)", new int[][] {{-1, 0}}, 4);
    assertMessage("rows must all have 2 codes", new int[][] {{0, 1}, {1}}, 4);
    assertMessage("non-empty", new int[0][], 4);
    assertMessage("64-bit key", new int[][] {{0, 0, 0}}, 1 << 21);
  }

  private static void assertMessage(String fragment, int[][] table, int k) {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> new PrefixIndex(table, k));
    assertTrue(e.getMessage(), e.getMessage().contains(fragment));
  }

  private static int[][] allPrefixes(int length, int k) {
    int count = (int) Math.pow(k, length);
    int[][] out = new int[count][length];
    for (int p = 0; p < count; p++) {
      int rest = p;
      for (int j = length - 1; j >= 0; j--) {
        out[p][j] = rest % k;
        rest /= k;
      }
    }
    return out;
  }

  /** The codes that follow {@code prefix} in some row, ascending. */
  private static int[] bruteChildren(int[][] table, int[] prefix, int k) {
    boolean[] seen = new boolean[k];
    for (int[] row : table) {
      boolean matches = true;
      for (int j = 0; j < prefix.length; j++) {
        matches &= row[j] == prefix[j];
      }
      if (matches) {
        seen[row[prefix.length]] = true;
      }
    }
    return IntStream.range(0, k).filter(c -> seen[c]).toArray();
  }

  private static int bruteItem(int[][] table, int[] full) {
    for (int i = 0; i < table.length; i++) {
      if (Arrays.equals(table[i], full)) {
        return i;
      }
    }
    return -1;
  }
}
