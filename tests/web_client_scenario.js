// What a dashboard does with the browser client; tests/test_web_client.py runs it in
// Chromium (page.evaluate) and checks what it returns.
(async ([url, encoding, ids]) => {
  const { connect, effect, InvalidValue, NotFound, Forbidden } = window.pl3xus;
  const seen = {};
  const client = connect(url, { encoding });
  await client.ready(10);
  seen.version = client.welcome.value.version;
  seen.identity = client.welcome.value.identity.name;
  const places = client.components("Place");
  const labels = client.components("Label");
  const until = async (test, ms = 5000) => {
    const end = Date.now() + ms;
    while (!test()) { if (Date.now() > end) throw new Error("timed out: " + test); await new Promise(r => setTimeout(r, 10)); }
  };
  await until(() => places.synced.value && labels.synced.value);
  seen.first = Object.fromEntries([...places.map].map(([e, v]) => [e, v]));
  // control, with who holds it
  await client.takeControl(ids.a);
  await client.takeControl(ids.b);
  const held = client.controlledBy(ids.a);
  await until(() => held.value !== undefined && held.value.holder !== null);
  seen.holder = held.value.holder === client.connectionId;
  // read-your-writes: the value is shown when the promise resolves
  let runs = 0;
  const stop = effect(() => { void places.version.value; runs += 1; });
  await client.mutate("Place", ids.a, { x: 10, y: 20 });
  seen.afterMutate = places.map.get(ids.a);
  stop();
  seen.effectRuns = runs;
  // a refusal by field; a read-only type; an unknown entity
  try { await client.request("Move", { dx: 1000 }, { entity: ids.a }); } catch (e) {
    seen.refused = [e.constructor.name, e instanceof InvalidValue, e.errors.map(x => x.loc)];
  }
  try { await client.mutate("Label", ids.a, { text: "x" }); } catch (e) { seen.readOnly = [e.constructor.name, e instanceof Forbidden]; }
  try { await client.mutate("Place", 999999, { x: 0, y: 0 }); } catch (e) { seen.missing = e instanceof NotFound; }
  seen.moved = await client.request("Move", { dx: 1, dy: 1 }, { entity: ids.b });
  seen.movedShown = places.map.get(ids.b);
  seen.found = await client.fetch("Find", { text: "b" });
  const q = client.query("Find", { text: "a" });
  await until(() => q.state.value.status === "ok");
  seen.query = q.state.value.value;
  await client.releaseControl(ids.a);
  await until(() => held.value === undefined || held.value.holder === null);
  // spawn and despawn
  const spawned = await client.spawn([["Place", { x: 7, y: 7 }]]);
  seen.spawnedShown = places.map.get(spawned);
  await client.despawn(spawned);
  await until(() => !places.map.has(spawned));
  // messages and notifications arrive
  const alarms = [];
  client.onMessage("Alarm", (m) => alarms.push(m));
  window.alarms = alarms;
  window.client = client;
  window.places = places;
  return seen;
})
