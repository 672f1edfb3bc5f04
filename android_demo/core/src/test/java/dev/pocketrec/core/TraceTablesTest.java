package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.Test;

/**
 * The tables and settings a trace embeds are those of the bundle it was recorded from, for every
 * trace that has its bundle folder beside it (the tiny one does).
 */
public class TraceTablesTest {

  @Test
  public void embeddedTablesEqualTheBundleFolder() throws IOException {
    int checked = 0;
    for (Path file : TestResources.traces()) {
      GoldenTrace trace = GoldenTrace.read(file);
      Path folder = TestResources.dir().resolve(trace.name + "_bundle");
      if (!Files.isDirectory(folder)) {
        continue;
      }
      Bundle bundle = Bundle.open(folder);
      Manifest m = bundle.manifest();
      assertEquals(m.name(), trace.bundle.get("name"));
      assertEquals(m.precision(), trace.bundle.get("precision"));
      assertEquals(Integer.valueOf(m.maxLen()), trace.setting("max_len"));
      assertEquals(Integer.valueOf(m.semanticIds().numLevels()), trace.setting("num_levels"));
      assertEquals(Integer.valueOf(m.semanticIds().codebookSize()), trace.setting("codebook_size"));
      assertEquals(new LinkedHashMap<String, Object>(m.search()), searchOf(trace));
      assertEquals(bundle.catalog().itemIds(), trace.itemIds);
      assertArrayEquals(bundle.catalog().popularity(), trace.popularity, 0.0);
      assertArrayEquals(bundle.semanticIds(), trace.semanticIds);
      checked++;
    }
    assertTrue("the tiny trace and tiny_bundle/ must be checked", checked >= 1);
  }

  private static Map<String, Object> searchOf(GoldenTrace trace) {
    return GoldenTrace.map(trace.bundle.get("search"));
  }
}
