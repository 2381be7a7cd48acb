(function(){
  var wf=document.getElementById('wf');
  var buttons=document.querySelectorAll('.toggle button');
  function show(view){
    if(!wf){return;}
    wf.classList.remove('view-startup','view-full');
    wf.classList.add('view-'+view);
    wf.setAttribute('data-view',view);
    for(var j=0;j<buttons.length;j++){buttons[j].classList.toggle('on',buttons[j].getAttribute('data-view')===view);}
  }
  for(var i=0;i<buttons.length;i++){
    buttons[i].addEventListener('click',function(ev){show(ev.currentTarget.getAttribute('data-view'));});
  }
  if(location.hash==='#whole-run'&&buttons.length){show('full');}
  document.documentElement.setAttribute('data-ready','1');
})();
