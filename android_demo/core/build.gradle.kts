// The decoding core: plain Java 17, no dependencies, no Android. The app uses it as a library;
// its tests run here with `./gradlew :core:test`, or without Gradle with core/run-tests.sh.
plugins {
    `java-library`
}

tasks.withType<JavaCompile>().configureEach {
    options.release.set(17)
    options.encoding = "UTF-8"
    options.compilerArgs.add("-Xlint:all")
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    useJUnit()
    systemProperty(
        "java.util.logging.config.file",
        layout.projectDirectory.file("src/test/resources/logging.properties").asFile.absolutePath,
    )
}
