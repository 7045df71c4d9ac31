-- Orthanc's auto-routing for bench/route_run.py: each instance Orthanc stores goes on to the
-- modality "dest" (the benchmark's storescp), as Orthanc users route without a plugin.
-- Orthanc calls OnStoredInstance once per stored instance; SendToModality sends it with a
-- C-STORE of its own (one association per call) before the callback returns.

function OnStoredInstance(instanceId, tags, metadata, origin)
   SendToModality(instanceId, 'dest')
end
